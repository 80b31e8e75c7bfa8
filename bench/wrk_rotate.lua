-- wrk script: POST a different body per request, cycling through a JSON-lines file, and print
-- one JSON summary line at the end (bench/wrk.py parses it).
--   wrk -t1 -c32 -d12s -s bench/wrk_rotate.lua http://127.0.0.1:8000/predict -- bodies.jsonl
local bodies = {}
local position = 0
local count = 0

function init(args)
  local path = args[1]
  if path == nil then
    error("wrk_rotate.lua needs the bodies file after --")
  end
  for line in io.lines(path) do
    if #line > 0 then
      count = count + 1
      bodies[count] = line
    end
  end
  if count == 0 then
    error("no request bodies in " .. path)
  end
  -- Threads (if more than one) start at different lines.
  position = (tonumber(args[2]) or 0) % count
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  position = position % count + 1
  return wrk.format(nil, nil, nil, bodies[position])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
