-- wrk script of the bench (lib/load.js --loader wrk): rotates over the requests in a file, one per
-- line as METHOD<TAB>PATH<TAB>BODY<TAB>AUTHORIZATION (BODY may be empty; a body is sent as
-- application/json; AUTHORIZATION, the header's value, may be empty), and prints the result as one
-- JSON line.
local requests = {}
local n = 0
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    local method, path, body, authorization = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    if authorization ~= "" then
      headers["Authorization"] = authorization
    end
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    n = n + 1
    requests[n] = wrk.format(method, path, headers, body)
  end
  -- each thread starts at a different place of the list
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"bytes":%d,"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"non2xx":%d,"errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect + e.read + e.write, e.timeout))
end
