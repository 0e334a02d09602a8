#!/usr/bin/env python3
"""Check, outside llm.ts, that a char-tokenizer model exported by llm.ts decodes to llm.ts's text.

    python scripts/check_char_export.py EXPORT/model.gguf EXPORT/hf EXPORT/cases.json \
        [--write test/fixtures/char-export/python.json]

Inputs (test/formats/char-export.test.ts writes all three when LLMTS_CHAR_EXPORT_OUT=EXPORT is
set; `llmts convert RUN --to gguf` / `--to hf` write the same forms):
  model.gguf   a GGUF file whose vocabulary is a char tokenizer (tokenizer.ggml.model 'llama', one
               NORMAL piece per character, ' ' written as U+2581)
  hf/          a Hugging Face directory with tokenizer.json (BPE over the characters, no merges,
               decoder Fuse)
  cases.json   {"source": {...}, "cases": [{"text": ..., "ids": [...]}, ...]}: llm.ts's ids of
               each text

Checks, for every case:
  GGUF  read with the `gguf` package's GGUFReader (tokens, token_type, model and flags), then
        decoded as llama.cpp's token_to_piece does for that tokenizer model ('llama': NORMAL pieces
        with U+2581 -> ' ', USER_DEFINED as written, BYTE pieces <0xXX> -> the byte, CONTROL,
        UNKNOWN and UNUSED -> nothing; 'gpt2': pieces in GPT-2's byte alphabet -> bytes), and
        encoded as llama.cpp's SPM tokenizer does when no two adjacent characters form a piece
        (spaces -> U+2581, a leading one when add_space_prefix, then one piece per character,
        <0xXX> byte pieces for characters outside the vocabulary);
  HF    tokenizers.Tokenizer.from_file(hf/tokenizer.json).decode(ids) == text and
        .encode(text).ids == ids.
Exit status 0 when all agree. With --write, the results go to a JSON file that the node test
compares against without Python (the "source" of cases.json is copied into it, so the test can
tell when the export format changed and the file must be made again).

Tested with gguf 0.19.0 and tokenizers 0.23.2.
"""
import argparse
import json
import os
import sys

from gguf import GGUFReader
from tokenizers import Tokenizer

SPACE = "\u2581"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def gpt2_byte_decoder():
    """GPT-2's bytes_to_unicode, inverted: token character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class GgufVocab:
    """The tokenizer metadata of a GGUF file, decoded and encoded as llama.cpp does."""

    def __init__(self, path):
        reader = GGUFReader(path)

        def get(key, default=None):
            field = reader.fields.get(key)
            return default if field is None else field.contents()

        self.model = get("tokenizer.ggml.model")
        self.tokens = get("tokenizer.ggml.tokens")
        if self.model is None or self.tokens is None:
            raise SystemExit(f"{path}: no tokenizer.ggml.model / tokens metadata")
        self.types = get("tokenizer.ggml.token_type", [NORMAL] * len(self.tokens))
        default_prefix = self.model == "llama"
        self.add_space_prefix = bool(get("tokenizer.ggml.add_space_prefix", default_prefix))
        self.add_bos = bool(get("tokenizer.ggml.add_bos_token", self.model == "llama"))
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.byte_decoder = gpt2_byte_decoder() if self.model == "gpt2" else None

    def piece(self, i):
        """llama.cpp's token_to_piece(special=False) for one id, as bytes."""
        text, kind = self.tokens[i], self.types[i]
        if kind in (CONTROL, UNKNOWN):
            return b""
        if kind == USER_DEFINED:
            return text.encode("utf-8")
        if self.model == "llama":
            if kind == NORMAL:
                return text.replace(SPACE, " ").encode("utf-8")
            if kind == BYTE:
                return bytes([int(text[3:5], 16)])
            return b""
        if self.model == "gpt2":
            if kind == NORMAL:
                return bytes(self.byte_decoder[c] for c in text)
            return b""
        raise SystemExit(f"tokenizer.ggml.model {self.model!r} is not handled by this script (llama, gpt2)")

    def decode(self, ids):
        return b"".join(self.piece(i) for i in ids).decode("utf-8", errors="replace")

    def encode(self, text):
        """llama.cpp's SPM encoding for a vocabulary without multi-character pieces, else None."""
        if self.model != "llama" or any(len(t) != 1 for t, k in zip(self.tokens, self.types) if k == NORMAL):
            return None
        s = (" " + text if self.add_space_prefix and text else text).replace(" ", SPACE)
        out = []
        for ch in s:
            if ch in self.ids:
                out.append(self.ids[ch])
                continue
            for b in ch.encode("utf-8"):  # llama.cpp's byte_to_token: <0xXX>, else the byte as text
                key = f"<0x{b:02X}>"
                if key in self.ids:
                    out.append(self.ids[key])
                elif chr(b) in self.ids and b < 0x80:
                    out.append(self.ids[chr(b)])
                else:
                    raise ValueError(f"{ch!r} has no piece and byte 0x{b:02X} none either (llama.cpp would throw here)")
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", help="GGUF model file with the char vocabulary")
    ap.add_argument("hf_dir", help="Hugging Face directory holding tokenizer.json")
    ap.add_argument("cases", help="JSON written by llm.ts: {source, cases: [{text, ids}]}")
    ap.add_argument("--write", metavar="FILE", help="also write the results as JSON (the fixture of the node test)")
    args = ap.parse_args()

    with open(args.cases, encoding="utf-8") as f:
        spec = json.load(f)
    vocab = GgufVocab(args.gguf)
    hf = Tokenizer.from_file(os.path.join(args.hf_dir, "tokenizer.json"))

    failures = 0
    results = []
    for n, case in enumerate(spec["cases"]):
        text, ids = case["text"], case["ids"]
        r = {
            "text": text,
            "ids": ids,
            "gguf_decode": vocab.decode(ids),
            "gguf_encode": vocab.encode(text),
            "hf_decode": hf.decode(ids),
            "hf_encode": hf.encode(text).ids,
        }
        results.append(r)
        checks = [("gguf decode", r["gguf_decode"], text), ("hf decode", r["hf_decode"], text), ("hf encode", r["hf_encode"], ids)]
        if r["gguf_encode"] is not None:
            checks.append(("gguf encode", r["gguf_encode"], ids))
        for what, got, want in checks:
            if got != want:
                failures += 1
                print(f"case {n}: {what} differs: got {got!r}, llm.ts has {want!r}")

    import importlib.metadata as md
    versions = {"gguf": md.version("gguf"), "tokenizers": md.version("tokenizers"), "python": sys.version.split()[0]}
    print(f"{args.gguf}: tokenizer.ggml.model {vocab.model!r}, {len(vocab.tokens)} tokens, add_space_prefix {vocab.add_space_prefix}, add_bos {vocab.add_bos}")
    print(f"{args.hf_dir}/tokenizer.json: {hf.get_vocab_size()} tokens, decoder {json.loads(hf.to_str()).get('decoder')}")
    n = len(results)
    print(f"{n} cases: gguf decode {sum(r['gguf_decode'] == r['text'] for r in results)}/{n}, "
          f"gguf encode {sum(r['gguf_encode'] == r['ids'] for r in results)}/{n}, "
          f"hf decode {sum(r['hf_decode'] == r['text'] for r in results)}/{n}, "
          f"hf encode {sum(r['hf_encode'] == r['ids'] for r in results)}/{n} agree with llm.ts "
          f"(gguf {versions['gguf']}, tokenizers {versions['tokenizers']})")
    if args.write:
        head = json.dumps({"source": spec.get("source"), "versions": versions}, ensure_ascii=False, indent=1)
        lines = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in results)  # one case a line
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(head[:-2] + ',\n "results": [\n' + lines + "\n ]\n}\n")
        print(f"wrote {args.write}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
