#!/usr/bin/env python3
"""Builds the fuzzers' seed corpora from the text files in corpus/.

corpus/request/*.txtpb      first line `# kind: N Message` (N as in
                            fuzz_request.cc's Kind), then the message in
                            protobuf text format -> byte N + the encoding.
corpus/train_stream/*.txt   first line `# ending: N` (fuzz_train_stream.cc),
                            then messages separated by lines `---`; each is
                            a TrainRequest in text format, or `raw: <hex>`
                            for bytes sent as they are (undecodable ones).
fuzz_engine                 FuzzedDataProvider input has no structure worth
                            writing by hand: 8 pseudo-random inputs.

Usage: make_corpus.py --protoc PROTOC --proto-dir proto/ --out DIR
"""
import argparse
import pathlib
import random
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
PROTO = "satlab/v1/training_service.proto"


def encode(protoc, proto_dir, message, text):
    return subprocess.run(
        [protoc, f"--encode=satlab.v1.{message}", f"-I{proto_dir}", PROTO],
        input=text.encode(), capture_output=True, check=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protoc", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = pathlib.Path(args.out)

    request_dir = out / "fuzz_request"
    request_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted((HERE / "corpus" / "request").glob("*.txtpb")):
        text = src.read_text()
        m = re.match(r"# kind: (\d+) (\w+)\n", text)
        if not m:
            sys.exit(f"{src}: first line must be '# kind: N Message'")
        body = encode(args.protoc, args.proto_dir, m.group(2), text[m.end():])
        (request_dir / src.stem).write_bytes(bytes([int(m.group(1))]) + body)

    stream_dir = out / "fuzz_train_stream"
    stream_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted((HERE / "corpus" / "train_stream").glob("*.txt")):
        text = src.read_text()
        m = re.match(r"# ending: (\d)\n", text)
        if not m:
            sys.exit(f"{src}: first line must be '# ending: N'")
        seed = bytearray([int(m.group(1))])
        for part in re.split(r"^---\n", text[m.end():], flags=re.M):
            part = part.strip()
            if part.startswith("raw:"):
                body = bytes.fromhex(part[4:].strip())
            else:
                body = encode(args.protoc, args.proto_dir, "TrainRequest", part)
            seed += bytes([0, len(body) & 0xFF, len(body) >> 8]) + body
        (stream_dir / src.stem).write_bytes(bytes(seed))

    engine_dir = out / "fuzz_engine"
    engine_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(10)
    for i in range(8):
        data = bytes(rng.randrange(256) for _ in range(64 + 48 * i))
        (engine_dir / f"random_{i}").write_bytes(data)


if __name__ == "__main__":
    main()
