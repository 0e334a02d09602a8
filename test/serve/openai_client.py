"""The official openai Python client against llmts serve (run by openai-client.test.ts).

    python openai_client.py BASE_URL MODEL PROMPT_IDS_JSON

Prints one JSON object with what each call returned; the test checks it against the server's
answers to the same requests made with plain HTTP.
"""
import json
import sys

import openai

base_url, model, prompt_ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = openai.OpenAI(base_url=base_url + "/v1", api_key="sesame", max_retries=0, timeout=60)
out = {"version": openai.__version__}

out["models"] = [m.id for m in client.models.list().data]

chat = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hi there"}], max_tokens=20, temperature=0,
)
out["chat"] = {
    "content": chat.choices[0].message.content,
    "role": chat.choices[0].message.role,
    "finish_reason": chat.choices[0].finish_reason,
    "usage": [chat.usage.prompt_tokens, chat.usage.completion_tokens, chat.usage.total_tokens],
    "object": chat.object,
}

stream = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hi there"}], max_tokens=20, temperature=0,
    stream=True, stream_options={"include_usage": True},
)
pieces, finishes, usage, objects = [], [], None, set()
for chunk in stream:
    objects.add(chunk.object)
    if chunk.usage is not None:
        usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens, chunk.usage.total_tokens]
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finishes.append(c.finish_reason)
out["chat_stream"] = {"content": "".join(pieces), "finish_reasons": finishes, "usage": usage, "objects": sorted(objects), "chunks": len(pieces)}

logprobs = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hey"}], max_tokens=5, temperature=0, logprobs=True, top_logprobs=2,
)
out["chat_logprobs"] = [
    {"token": t.token, "logprob": t.logprob, "top": [[a.token, a.logprob] for a in t.top_logprobs]}
    for t in logprobs.choices[0].logprobs.content
]

text = client.completions.create(model=model, prompt="hello there", max_tokens=10, temperature=0, echo=True, logprobs=2)
lp = text.choices[0].logprobs
out["completion"] = {
    "text": text.choices[0].text,
    "finish_reason": text.choices[0].finish_reason,
    "tokens": lp.tokens,
    "token_logprobs": lp.token_logprobs,
    "top_logprobs": lp.top_logprobs,
}

# lm-evaluation-harness's loglikelihood request: token ids, echo, one token, logprobs 1
ll = client.completions.create(model=model, prompt=[prompt_ids], max_tokens=1, temperature=0, echo=True, logprobs=1, seed=1234)
out["loglikelihood"] = {"token_logprobs": ll.choices[0].logprobs.token_logprobs, "top_logprobs": ll.choices[0].logprobs.top_logprobs}

text_stream = client.completions.create(model=model, prompt="hello there", max_tokens=10, temperature=0, stream=True)
out["completion_stream"] = "".join(c.choices[0].text for c in text_stream if c.choices)

errors = {}
try:
    client.completions.create(model=model, prompt="x", temperature=5)
except openai.BadRequestError as e:
    errors["bad_request"] = [e.status_code, e.body.get("param") if isinstance(e.body, dict) else None]
try:
    client.completions.create(model="no-such-model", prompt="x")
except openai.NotFoundError as e:
    errors["not_found"] = [e.status_code, e.body.get("code") if isinstance(e.body, dict) else None]
try:
    openai.OpenAI(base_url=base_url + "/v1", api_key="wrong", max_retries=0).models.list()
except openai.AuthenticationError as e:
    errors["auth"] = [e.status_code]
out["errors"] = errors

print(json.dumps(out))
