-- wrk script: POST the workload's JSON body and count answers whose err_no is not 0.
--
-- The body comes from the environment (WRK_BODY), so one script serves every workload.
-- A pipeline reports failures (timeouts, op errors) as err_no in a 200 answer, which wrk would
-- count as a success; checking err_no keeps a fast failure from passing for throughput.

wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or error("post.lua: set WRK_BODY to the request's JSON body")
wrk.headers["Content-Type"] = "application/json"

local threads = {}
failed = 0  -- global: done() reads it from each thread with thread:get()

function setup(thread)
   table.insert(threads, thread)
end

function response(status, headers, body)
   if status == 200 and not string.find(body, '"err_no"%s*:%s*0%s*[,}]') then
      failed = failed + 1
   end
end

function done(summary, latency, requests)
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + thread:get("failed")
   end
   io.write(string.format("err_no errors: %d\n", total))
end
