-- READ: GET /v1/<mount>/data/ns-<random 1..N>: one KV v2 secret holding SECRETS fields.
-- env: BAO_TOKEN, N (1000), KV_MOUNT (secret)
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
local n = tonumber(os.getenv("N") or "1000")
local prefix = "/v1/" .. (os.getenv("KV_MOUNT") or "secret") .. "/data/ns-"
local hdrs = { ["X-Vault-Token"] = os.getenv("BAO_TOKEN") }

setup = c.setup

function init(args)
  c.seed(tid)
end

function request()
  return wrk.format("GET", prefix .. math.random(1, n), hdrs)
end
