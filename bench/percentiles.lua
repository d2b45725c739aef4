-- wrk script: print latency percentiles (microseconds) and errors in a form bench/ can parse.
done = function(summary, latency, requests)
  io.write(string.format("HADR p50=%d p95=%d p99=%d requests=%d errors=%d seconds=%f\n",
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6))
end
