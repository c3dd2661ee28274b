-- WRITE: update one existing secret (KEY_0 .. KEY_<SECRETS-1>) of a random namespace from
-- KEYS_FILE with a fresh VALUE_BYTES-character value: POST /namespaces/{accessKey}.
-- env: BENCH_TOKEN, KEYS_FILE, SECRETS (10), VALUE_BYTES (32)
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
local hdrs = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
               ["Content-Type"] = "application/json" }
local secrets = tonumber(os.getenv("SECRETS") or "10")
local len = tonumber(os.getenv("VALUE_BYTES") or "32")
local keys, values

setup = c.setup

function init(args)
  c.seed(tid)
  keys = c.load_keys()
  values = c.value_pool(512, len)
end

function request()
  local body = '{"key":"KEY_' .. math.random(0, secrets - 1) .. '","value":"' ..
               values[math.random(1, #values)] .. '"}'
  return wrk.format("POST", "/namespaces/" .. keys[math.random(1, #keys)], hdrs, body)
end
