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
fuzz_codec                  valid payloads written here from docs/storage.md's
                            layout (a second, independent writer of the
                            format): mode byte 1-3 + payload, and one whole
                            frame (mode 0).

Usage: make_corpus.py --protoc PROTOC --proto-dir proto/ --out DIR
"""
import argparse
import pathlib
import random
import re
import struct
import subprocess
import sys
import zlib

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

    codec_dir = out / "fuzz_codec"
    codec_dir.mkdir(parents=True, exist_ok=True)
    for name, data in codec_seeds().items():
        (codec_dir / name).write_bytes(data)


def codec_spec(sizes, dtype, adam, explicit=False):
    """A spec payload (docs/storage.md, "spec")."""
    b = struct.pack("<iI", sizes[0], len(sizes) - 1)
    for units in sizes[1:]:
        b += struct.pack("<iBd", units, 4, 0.01)  # leaky_relu
    b += struct.pack("<BBQdd", 1, 6 if explicit else 2, 7, 0.0, 1.0)
    layers = []
    if explicit:
        for fan_in, units in zip(sizes, sizes[1:]):
            layers.append(struct.pack("<QQ", fan_in, units) +
                          struct.pack(f"<{fan_in * units}d", *([0.5] * (fan_in * units))) +
                          struct.pack("<QQ", 1, units) +
                          struct.pack(f"<{units}d", *([0.25] * units)))
    b += struct.pack("<I", len(layers)) + b"".join(layers)
    b += struct.pack("<BddBdddd", 1 if adam else 0, 0.1, 0.9, 1, 0.0, 0.9,
                     0.999, 1e-8)
    b += struct.pack("<Bd", dtype, 0.1)
    return b


def codec_tensors(sizes, dtype, value):
    fmt, size = ("f", 4) if dtype == 0 else ("d", 8)
    weights = struct.pack("<I", len(sizes) - 1)
    biases = struct.pack("<I", len(sizes) - 1)
    for fan_in, units in zip(sizes, sizes[1:]):
        weights += struct.pack("<BQQ", dtype, fan_in, units) + struct.pack(
            f"<{fan_in * units}{fmt}", *([value] * (fan_in * units)))
        biases += struct.pack("<BQQ", dtype, 1, units) + struct.pack(
            f"<{units}{fmt}", *([value] * units))
    return weights + biases


def codec_state(sizes, dtype, adam):
    """A state payload: spec, step, samples_seen, optimizer_updates,
    weights, biases, slots."""
    b = codec_spec(sizes, dtype, adam) + struct.pack("<qqq", 12, 384, 12 if adam else 0)
    b += codec_tensors(sizes, dtype, 0.5)
    slots = 2 if adam else 1
    b += struct.pack("<I", slots)
    for i in range(slots):
        b += codec_tensors(sizes, dtype, 0.125 * (i + 1))
    return b


def codec_seeds():
    requests = struct.pack("<I", 2)
    for i in range(2):
        rid, resp = f"req-{i}".encode(), bytes(range(i * 10, i * 10 + 40))
        requests += struct.pack("<Q", len(rid)) + rid + struct.pack("<Q", 99 + i)
        requests += struct.pack("<Q", len(resp)) + resp
    state = codec_state([2, 3, 1], 1, False)
    frame = (b"SLNS" + struct.pack("<IQI", 1, len(state), zlib.crc32(state)) + state)
    return {
        "state_f64_momentum": b"\x01" + state,
        "state_f32_adam": b"\x01" + codec_state([3, 4, 2], 0, True),
        "spec_explicit": b"\x02" + codec_spec([2, 2, 1], 1, False, explicit=True),
        "requests": b"\x03" + requests,
        "frame_state": b"\x00" + frame,
    }


if __name__ == "__main__":
    main()
