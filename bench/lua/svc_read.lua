-- READ: GET /namespaces/{accessKey} of a random namespace from KEYS_FILE.
-- env: BENCH_TOKEN, KEYS_FILE, KEYS_LIMIT (optional)
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
local hdrs = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }
local keys

setup = c.setup

function init(args)
  c.seed(tid)
  keys = c.load_keys()
end

function request()
  return wrk.format("GET", "/namespaces/" .. keys[math.random(1, #keys)], hdrs)
end
