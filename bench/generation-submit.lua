-- wrk script for bench/generation.sh: each request submits one new task (a unique prompt and
-- Idempotency-Key); a thread stops after its share of BENCH_TASKS answers.
local counter = 0
local answered = 0
local key = os.getenv("BENCH_KEY")
local share = tonumber(os.getenv("BENCH_TASKS_PER_THREAD") or "1000")
local tag = tostring(math.random(1, 1e9))

request = function()
  counter = counter + 1
  local body = '{"prompt":"bench ' .. tag .. ' ' .. counter .. '","size":"256x256","quality":"low"}'
  return wrk.format("POST", "/api/v1/generations", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench-" .. tag .. "-" .. counter,
  }, body)
end

response = function(status, headers, body)
  answered = answered + 1
  if answered >= share then wrk.thread:stop() end
end
