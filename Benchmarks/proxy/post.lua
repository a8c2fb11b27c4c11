-- wrk script: POST a ~300-byte chat request, like an OpenAI client would.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"How should I benchmark a reverse proxy on loopback so that the numbers mean something? Give me three short tips."}],"temperature":0.2,"max_tokens":200,"stream":false}'
