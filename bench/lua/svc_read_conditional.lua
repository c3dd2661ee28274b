-- READ-304: GET /namespaces/{accessKey} of a random namespace from ETAGS_FILE with
-- If-None-Match holding its current entity tag, so every answer is 304 with no body: the
-- conditional re-read of a namespace that did not change (one lookup of the namespace's row,
-- nothing decrypted). The same namespaces as READ, measured right after it and before any write.
-- env: BENCH_TOKEN, ETAGS_FILE ("<access key> <ETag>" per line)
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local c = require("common")
local auth = "Bearer " .. os.getenv("BENCH_TOKEN")
local requests

setup = c.setup

function init(args)
  c.seed(tid)
  local path = os.getenv("ETAGS_FILE") or error("ETAGS_FILE is not set")
  requests = {}
  for line in io.lines(path) do
    local key, etag = line:match("^(%S+) (.+)$")
    if key then
      requests[#requests + 1] = wrk.format("GET", "/namespaces/" .. key,
        { ["Authorization"] = auth, ["If-None-Match"] = etag })
    end
  end
  assert(#requests > 0, "no entity tags in " .. path)
end

function request()
  return requests[math.random(1, #requests)]
end
