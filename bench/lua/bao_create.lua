-- CREATE: a brand-new KV v2 secret per request, with one field (KV v2 has no empty secret):
-- POST /v1/<mount>/data/new-<RUN_TAG>-<thread>-<counter>.
-- env: BAO_TOKEN, RUN_TAG (keeps warm-up and measured paths apart), KV_MOUNT (secret)
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
local tag = os.getenv("RUN_TAG") or tostring(os.time())
local mount = os.getenv("KV_MOUNT") or "secret"
local hdrs = { ["X-Vault-Token"] = os.getenv("BAO_TOKEN"), ["Content-Type"] = "application/json" }
local counter = 0
local prefix

setup = c.setup

function init(args)
  prefix = "/v1/" .. mount .. "/data/new-" .. tag .. "-" .. tostring(tid or 0) .. "-"
end

function request()
  counter = counter + 1
  return wrk.format("POST", prefix .. counter, hdrs,
                    '{"data":{"KEY_0":"' .. string.format("%032d", counter) .. '"}}')
end
