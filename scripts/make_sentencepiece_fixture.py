"""Make the SentencePiece parity fixtures for test/tokenizer/sentencepiece.test.ts.

    apt-get install -y python3-sentencepiece
    /usr/bin/python3 scripts/make_sentencepiece_fixture.py [path/to/shared/data]

Uses Debian's python3-sentencepiece (Google's C++ library; tested with 0.1.97) and the Llama 2
`tokenizer.model` from shared/data/llama2-tokenizer/. Writes, under test/fixtures/tokenizer/:

  llama2-tinyshakespeare.u16.gz  the ids of all of shared/data/tinyshakespeare/input.txt,
                                 encoded as one string without BOS (sp.encode(text)), as
                                 uint16 little-endian, gzipped (mtime 0, so deterministic)
  llama2-sentencepiece.json      {"sentencepiece_version", "model_sha256", "text_sha256"
                                 (sha256 of input.txt's bytes), "text_ids", "encode": [{text,
                                 ids, pieces, decoded}], "decode": [{ids, text}]}: hand-picked
                                 adversarial strings and id sequences; "tiny": a hand-written
                                 ModelProto (base64) exercising what Llama's model does not:
                                 no byte fallback (consecutive unknowns merge into one <unk>),
                                 user-defined and unused pieces, remove_extra_whitespaces
"""
import base64
import gzip
import hashlib
import json
import os
import struct
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def find_shared():
    if len(sys.argv) > 1:
        return sys.argv[1]
    d = REPO
    while True:
        cand = os.path.join(d, 'shared', 'data')
        if os.path.isdir(cand):
            return cand
        parent = os.path.dirname(d)
        if parent == d:
            sys.exit('shared/data not found; pass its path as the first argument')
        d = parent


ENCODE_CASES = [
    '',
    'Hello world',
    'I believe the meaning of life is',
    # emoji (byte fallback), skin tones, ZWJ sequences
    'Hello 👋🏽 world 🧑‍🤝‍🧑 🦙🦙',
    '😀😃😄😁',
    # combining marks
    'cafe\u0301 n\u0303 e\u0301\u0301 Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307',
    # CJK and other scripts
    '我爱自然语言处理。東京は日本の首都です。한국어 텍스트',
    'مرحبا بالعالم שלום עולם नमस्ते दुनिया ស្វាគមន៍ Привет, мир',
    # spaces
    ' leading',
    'trailing ',
    '  two leading',
    'multiple    spaces   inside',
    ' ',
    '   ',
    ' ' * 40,
    # tabs and newlines
    '\tTab\tseparated\t\tvalues\t',
    'line1\nline2\n\n\nline5\r\nend\n',
    '\n',
    '\n\n \n',
    # digits
    '1234567890 3.14159 2024-01-01 0x1F 1,000,000',
    # outside the vocabulary: control characters, astral letters, rare scripts, BOM, private use
    '\u0000\u0001\u0007\u007f',
    '\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522',
    '\u16a0\u16c7\u16bb \ufeff BOM \ue000 \U0010fffd',
    # special-token text is ordinary text
    '<s>Hello</s>',
    '<unk> <s> </s> <0x41>',
    # the meta symbol itself
    '\u2581 literal \u2581\u2581 x\u2581',
    # punctuation, code, repetition (pair ties)
    "Hello, world! How's it going? I'm fine; you're late...",
    'def f(x):\n    return x ** 2  # square\n',
    'a' * 300,
    'ab' * 150,
    '=' * 64 + '\n' + '-' * 33,
    'ÀÉÎÕÜ àéîõü ß æøå',
]

DECODE_CASES = [
    [29871, 29871, 15043],
    [259, 15043],
    [1, 259],
    [1, 1, 15043],
    [0],
    [0, 15043],
    [13, 15043],
    [29871],
    [29871, 29871],
    [3 + 0xE2, 3 + 0x82, 3 + 0xAC],
    [3 + 0xE2, 3 + 0x82],
    [3 + 0xE2, 15043],
    [3 + 0xFF, 3 + 0xC0, 3 + 0x80],
    [2, 15043],
    [15043, 2, 15043],
    [3 + 0x20, 15043],
]


def varint(v):
    out = b''
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    if wire == 5:
        return key + struct.pack('<f', payload)
    return key + varint(len(payload)) + payload


TINY_PIECES = [
    # piece, score, type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused)
    ('<unk>', 0.0, 2), ('<s>', 0.0, 3), ('</s>', 0.0, 3), ('<tag>', 0.0, 4),
    ('\u2581', -1.0, 1), ('a', -2.0, 1), ('b', -3.0, 1), ('c', -4.0, 1),
    ('ab', -5.0, 1), ('bc', -5.0, 1), ('abc', -6.0, 1), ('\u2581a', -7.0, 1), ('\u2581ab', -8.0, 1),
    ('ca', -0.5, 5), ('cab', -9.0, 1), ('\u2581\u2581', -10.0, 1), ('b\u2581', -11.0, 1),
]

TINY_CASES = ['abc abc', 'xyz', 'axyzb', 'a<tag>b<tag>', '  a   b  ', 'caca', 'cab', 'abab cc', 'ab b', '', '   ', 'b b', 'x y']


def tiny_model():
    pieces = b''.join(field(1, 2, field(1, 2, p.encode()) + field(2, 5, s) + field(3, 0, t)) for p, s, t in TINY_PIECES)
    trainer = field(3, 0, 2) + field(4, 0, len(TINY_PIECES)) + field(35, 0, 0)
    normalizer = field(1, 2, b'identity') + field(3, 0, 1) + field(4, 0, 1) + field(5, 0, 1)
    return pieces + field(2, 2, trainer) + field(3, 2, normalizer)


def main():
    shared = find_shared()
    model = os.path.join(shared, 'llama2-tokenizer', 'tokenizer.model')
    text_path = os.path.join(shared, 'tinyshakespeare', 'input.txt')
    sp = spm.SentencePieceProcessor(model_file=model)
    raw = open(text_path, 'rb').read()
    text = raw.decode('utf-8')
    ids = sp.encode(text)
    assert max(ids) < 65536
    out_dir = os.path.join(REPO, 'test', 'fixtures', 'tokenizer')
    os.makedirs(out_dir, exist_ok=True)
    packed = struct.pack('<%dH' % len(ids), *ids)
    with open(os.path.join(out_dir, 'llama2-tinyshakespeare.u16.gz'), 'wb') as f:
        f.write(gzip.compress(packed, compresslevel=9, mtime=0))
    cases = {
        'sentencepiece_version': spm.__version__,
        'model_sha256': hashlib.sha256(open(model, 'rb').read()).hexdigest(),
        'text_sha256': hashlib.sha256(raw).hexdigest(),
        'text_ids': len(ids),
        'encode': [],
        'decode': [],
    }
    for s in ENCODE_CASES:
        e = sp.encode(s)
        cases['encode'].append({'text': s, 'ids': e, 'pieces': [sp.id_to_piece(i) for i in e], 'decoded': sp.decode(e)})
    for d in DECODE_CASES:
        cases['decode'].append({'ids': d, 'text': sp.decode(d)})
    tiny = tiny_model()
    tsp = spm.SentencePieceProcessor(model_proto=tiny)
    cases['tiny'] = {
        'model_base64': base64.b64encode(tiny).decode('ascii'),
        'encode': [{'text': t, 'ids': tsp.encode(t), 'pieces': tsp.encode(t, out_type=str), 'decoded': tsp.decode(tsp.encode(t))} for t in TINY_CASES],
    }
    with open(os.path.join(out_dir, 'llama2-sentencepiece.json'), 'w', encoding='utf-8') as f:
        json.dump(cases, f, ensure_ascii=True, indent=1)
        f.write('\n')
    print('%d ids for %d characters; %d encode cases, %d decode cases' % (len(ids), len(text), len(ENCODE_CASES), len(DECODE_CASES)))


if __name__ == '__main__':
    main()
