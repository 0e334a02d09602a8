#!/usr/bin/env python3
"""Render chat templates with Python transformers, for test/chat/jinja.test.ts to compare against.

    python3 -m venv /tmp/venv-tf && /tmp/venv-tf/bin/pip install transformers jinja2 sentencepiece protobuf
    /tmp/venv-tf/bin/python scripts/make_chat_template_fixture.py \
        [--llama2-tokenizer ../shared/data/llama2-tokenizer/tokenizer.model] \
        --write test/fixtures/chat-templates/transformers.json

For every template below (real Hugging Face chat templates, copied from the models'
tokenizer_config.json, plus ChatML and Llama-2 variants with transformers' {% generation %}
markers) and every conversation, it records what transformers' render_jinja_template (the
function behind apply_chat_template) gives:
  full        the whole conversation, add_generation_prompt=False
  prompt      the conversation up to its last user message, add_generation_prompt=True
  spans       with {% generation %} markers: the [start, end) character spans of the assistant
              text (return_assistant_tokens_mask=True)
  error       the exception's message instead, when the template raises (raise_exception)
bos_token is '<s>' and eos_token '</s>' throughout (a Llama-style tokenizer's).

With --llama2-tokenizer (the Llama 2 SentencePiece model), it also records for the Llama-2
template with {% generation %} markers and conversation 'system_multi' the token ids and
assistant_masks of apply_chat_template(tokenize=True, return_assistant_tokens_mask=True) with a
LlamaTokenizer built from that file ("llama2_tokens"); the node test compares llm.ts's
renderConversation on the same tokenizer (when ../shared/data is there).

Tested with transformers 5.18.0, jinja2 3.1.6, sentencepiece 0.2.x.
"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

LLAMA2_GENERATION = LLAMA2.replace(
    "{{ ' '  + content.strip() + ' ' + eos_token }}",
    "{% generation %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endgeneration %}",
)

ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CHATML_GENERATION = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# multi-line, with whitespace control around the {% generation %} tags (as Qwen-style training templates are written)
CHATML_GENERATION_MULTILINE = """{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
        {{- message.content + '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

TEMPLATES = {
    "chatml": CHATML,
    "llama2": LLAMA2,
    "llama2_generation": LLAMA2_GENERATION,
    "zephyr": ZEPHYR,
    "gemma": GEMMA,
    "llama3": LLAMA3,
    "chatml_generation": CHATML_GENERATION,
    "chatml_generation_multiline": CHATML_GENERATION_MULTILINE,
}

CONVERSATIONS = {
    "system_multi": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "It is 4."},
    ],
    "no_system": [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue"},
    ],
    "specials_in_content": [
        {"role": "user", "content": "Say <|im_end|> and </s> please"},
        {"role": "assistant", "content": "No: <|im_end|>, </s>, <|eot_id|>."},
    ],
    "whitespace": [
        {"role": "user", "content": "  spaced\n"},
        {"role": "assistant", "content": "line one\nline two"},
    ],
}

BOS, EOS = "<s>", "</s>"


def render(template, messages, add_generation_prompt, mask=False):
    rendered, indices = render_jinja_template(
        conversations=[messages], chat_template=template, add_generation_prompt=add_generation_prompt,
        return_assistant_tokens_mask=mask, bos_token=BOS, eos_token=EOS,
    )
    return rendered[0], (indices[0] if mask else None)


def case(name, template, conv_name, messages):
    out = {"template": name, "conversation": conv_name}
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    try:
        mask = re.search(r"\{%-?\s*generation\s*-?%\}", template) is not None
        full, spans = render(template, messages, False, mask)
        out["full"] = full
        out["prompt"] = render(template, messages[: last_user + 1], True)[0]
        if mask:
            out["spans"] = [list(s) for s in spans]
    except (jinja2.exceptions.TemplateError, ValueError) as err:
        out = {"template": name, "conversation": conv_name, "error": str(err)}
    return out


def llama2_tokens(model_path):
    from transformers import LlamaTokenizer

    # from_pretrained on a directory holding only tokenizer.model, legacy=True: the behaviour of
    # meta-llama/Llama-2-7b-chat-hf's tokenizer ('<s>[INST]' -> '<s>', '▁[', 'INST', ']');
    # LlamaTokenizer(vocab_file=...) builds an empty vocabulary in transformers 5
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(model_path, os.path.join(d, "tokenizer.model"))
        tok = LlamaTokenizer.from_pretrained(d, legacy=True)
    messages = CONVERSATIONS["system_multi"]
    enc = tok.apply_chat_template(
        messages, chat_template=LLAMA2_GENERATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
    )
    return {
        "tokenizer": "LlamaTokenizer.from_pretrained(dir with the Llama 2 tokenizer.model, legacy=True)",
        "template": "llama2_generation",
        "conversation": "system_multi",
        "ids": list(enc["input_ids"]),
        "assistant_masks": list(enc["assistant_masks"]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", help="write the JSON here (default: stdout)")
    ap.add_argument("--llama2-tokenizer", help="the Llama 2 tokenizer.model, for the token-level case")
    args = ap.parse_args()
    fixture = {
        "source": {"transformers": transformers.__version__, "jinja2": jinja2.__version__, "bos_token": BOS, "eos_token": EOS},
        "templates": TEMPLATES,
        "conversations": CONVERSATIONS,
        "cases": [case(t, src, c, msgs) for t, src in TEMPLATES.items() for c, msgs in CONVERSATIONS.items()],
    }
    if args.llama2_tokenizer:
        fixture["llama2_tokens"] = llama2_tokens(args.llama2_tokenizer)
    text = json.dumps(fixture, indent=1, ensure_ascii=False) + "\n"
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {len(fixture['cases'])} cases to {args.write}", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
