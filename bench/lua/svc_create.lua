-- CREATE: POST /namespaces (no body): one new, empty namespace per request.
-- env: BENCH_TOKEN
local hdrs = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
               ["Content-Length"] = "0" }
local req = wrk.format("POST", "/namespaces", hdrs)

function request()
  return req
end
