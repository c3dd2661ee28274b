-- Shared by the wrk scripts of bench/run.sh. Each wrk thread loads this into its own Lua state.
local M = {}

-- Loads access keys (one per line) from the file named by KEYS_FILE; KEYS_LIMIT > 0 keeps
-- only the first KEYS_LIMIT of them.
function M.load_keys()
  local path = os.getenv("KEYS_FILE") or error("KEYS_FILE is not set")
  local limit = tonumber(os.getenv("KEYS_LIMIT") or "0")
  local keys = {}
  for line in io.lines(path) do
    if #line > 0 then
      keys[#keys + 1] = line
      if limit > 0 and #keys >= limit then break end
    end
  end
  assert(#keys > 0, "no access keys in " .. path)
  return keys
end

-- Distinct random sequences per thread (wrk threads would otherwise share the seed).
local threads = {}
function M.setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

function M.seed(tid)
  math.randomseed(os.time() * 1009 + (tid or 0) * 7919 + math.floor(os.clock() * 1e6))
end

-- Random printable values of `len` characters, pre-generated so that building bodies does not
-- eat the CPU the server under test needs.
function M.value_pool(count, len)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
  local pool = {}
  for p = 1, count do
    local t = {}
    for i = 1, len do
      local k = math.random(1, #alphabet)
      t[i] = alphabet:sub(k, k)
    end
    pool[p] = table.concat(t)
  end
  return pool
end

return M
