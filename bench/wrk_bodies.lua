-- wrk script for bench/serve.py: POST one JSON body per request, cycling through a file
-- of pre-encoded bodies (one per line), and print a JSON summary when the run ends.
-- Usage: wrk -tN -cN -d20s -s wrk_bodies.lua URL -- BODIES_FILE N
--        wrk -tN -cN -d20s -s wrk_bodies.lua URL -- GET N   (plain GETs: the ceiling probe)
--
-- One connection per wrk thread (-t = -c), so each thread's request()/response() pairs
-- belong to one connection and this script times every request exactly (LuaJIT's FFI,
-- CLOCK_MONOTONIC). wrk's own latency statistics are "corrected" for coordinated
-- omission after the run (stats_correct adds synthetic samples for every latency over
-- twice the mean cycle time), which inflates p50 and the mean of a closed-loop run whose
-- service times vary; they are kept in the summary as "wrk_corrected_us" for reference.
-- Thread k of N starts k/N of the way through the bodies, so connections do not send the
-- same text at the same moment.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } qinggan_timespec;
  int clock_gettime(int clock_id, qinggan_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now_ts = ffi.new("qinggan_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
  return tonumber(now_ts.tv_sec) * 1e6 + tonumber(now_ts.tv_nsec) / 1e3
end

-- main state: the threads, for done()
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

-- thread state
bodies = {}
latencies = {}
local next_index = 1
local plain_get = false
local started = nil

function init(args)
  local path = args[1]
  local total = tonumber(args[2]) or 1
  if path == "GET" then
    plain_get = true
    return
  end
  for line in io.lines(path) do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
  if #bodies == 0 then
    error("no request bodies in " .. tostring(path))
  end
  next_index = 1 + math.floor((thread_index or 0) * #bodies / total) % #bodies
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  started = now_us()
  if plain_get then
    return wrk.format("GET")
  end
  local body = bodies[next_index]
  next_index = next_index % #bodies + 1
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if started ~= nil then
    latencies[#latencies + 1] = now_us() - started
    started = nil
  end
end

local function percentile(sorted, p)
  -- linear interpolation between closest ranks (numpy's default)
  local n = #sorted
  if n == 0 then
    return 0
  end
  local rank = (p / 100) * (n - 1) + 1
  local low = math.floor(rank)
  local high = math.min(low + 1, n)
  return sorted[low] + (rank - low) * (sorted[high] - sorted[low])
end

function done(summary, latency, requests)
  local all = {}
  local sum = 0
  for _, thread in ipairs(threads) do
    for _, value in ipairs(thread:get("latencies")) do
      all[#all + 1] = value
      sum = sum + value
    end
  end
  table.sort(all)
  local e = summary.errors
  local out = string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"n": %d, "mean": %.1f, "max": %.1f, "p50": %.1f, "p95": %.1f, "p99": %.1f}, ' ..
    '"wrk_corrected_us": {"mean": %.1f, "max": %d, "p50": %d, "p95": %d, "p99": %d}}',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    #all, #all > 0 and sum / #all or 0, all[#all] or 0,
    percentile(all, 50), percentile(all, 95), percentile(all, 99),
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(95), latency:percentile(99))
  io.write("WRK_JSON " .. out .. "\n")
end
