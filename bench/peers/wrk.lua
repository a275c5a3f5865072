-- wrk script for bench/peers/run.sh.
-- The request: method and body come from the environment (WRK_METHOD, WRK_BODY);
-- headers are given with wrk's -H.
-- At the end it prints one machine-readable line, WRK_RESULT key=value ...,
-- that run.sh parses (latencies in microseconds).

wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d " ..
    "non2xx3xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, summary.requests / secs,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
