-- CREATE: POST /namespaces (no body): one new, empty namespace per request.
-- env: BENCH_TOKEN
local hdrs = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
               ["Content-Length"] = "0" }
local req

function init(args)
  -- Built here, not when the file loads: only now does wrk.format know the Host header.
  req = wrk.format("POST", "/namespaces", hdrs)
end

function request()
  return req
end
