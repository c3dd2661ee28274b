-- WRITE: a new version of a random seeded KV v2 secret (POST /v1/<mount>/data/ns-<1..N>).
-- KV v2 stores a secret's fields as one versioned blob, so changing one field is a write of
-- all SECRETS fields (a PATCH would also read the current version first: more work, not less).
-- env: BAO_TOKEN, N (1000), SECRETS (10), VALUE_BYTES (32), KV_MOUNT (secret)
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
local n = tonumber(os.getenv("N") or "1000")
local secrets = tonumber(os.getenv("SECRETS") or "10")
local len = tonumber(os.getenv("VALUE_BYTES") or "32")
local prefix = "/v1/" .. (os.getenv("KV_MOUNT") or "secret") .. "/data/ns-"
local hdrs = { ["X-Vault-Token"] = os.getenv("BAO_TOKEN"), ["Content-Type"] = "application/json" }
local bodies = {}

setup = c.setup

function init(args)
  c.seed(tid)
  local values = c.value_pool(512, len)
  for b = 1, 256 do
    local f = {}
    for k = 0, secrets - 1 do
      f[#f + 1] = string.format('"KEY_%d":"%s"', k, values[math.random(1, #values)])
    end
    bodies[b] = '{"data":{' .. table.concat(f, ",") .. '}}'
  end
end

function request()
  return wrk.format("POST", prefix .. math.random(1, n), hdrs, bodies[math.random(1, #bodies)])
end
