-- wrk script for bench/serve.py: POST one JSON body per request, cycling through a file
-- of pre-encoded bodies (one per line), and print a JSON summary when the run ends.
-- Usage: wrk -t1 -c16 -d20s -s wrk_bodies.lua URL -- BODIES_FILE
--        wrk -t1 -c16 -d20s -s wrk_bodies.lua URL -- GET   (plain GETs: the ceiling probe)

local bodies = {}
local next_index = 1
local plain_get = false

function init(args)
  local path = args[1]
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
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  if plain_get then
    return wrk.format("GET")
  end
  local body = bodies[next_index]
  next_index = next_index % #bodies + 1
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local out = string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d}}',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99))
  io.write("WRK_JSON " .. out .. "\n")
end
