-- wrk script for bench/hit-path.sh: each request asks for a random path from
-- the file named by WRK_PATHS (one "/group/key" a line); done() writes the
-- figures as JSON to WRK_OUT (latencies in microseconds, as wrk keeps them).
--
-- WRK_PATHS=keys.txt WRK_OUT=out.json wrk -t1 -c64 -d10s -s bench/wrk-paths.lua http://127.0.0.1:3101

local requests = {}

local function load_paths()
  local file = assert(io.open(os.getenv("WRK_PATHS"), "r"))
  local paths = {}
  for line in file:lines() do
    if line ~= "" then
      paths[#paths + 1] = line
    end
  end
  file:close()
  return paths
end

function init(args)
  -- Format every request once; request() then only picks one.
  for i, path in ipairs(load_paths()) do
    requests[i] = wrk.format("GET", path)
  end
  math.randomseed(os.time())
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, _)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local out = assert(io.open(os.getenv("WRK_OUT"), "w"))
  out:write(string.format(
    '{"requests":%d,"duration_s":%.6f,"requests_per_sec":%.1f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
  out:close()
end
