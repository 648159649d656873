"""Whether llama.cpp's extra buffer types work on this CPU, found out in a child process.

Some cloud VMs advertise AMX but fault on it: the first completion then dies with SIGILL inside
`ggml_backend_amx_mul_mat`, taking the whole process with it. `extra_buffers_usable` loads the model
and runs a tiny completion in a child first; a child killed by a signal means the model is loaded
with the extra buffer types off (`use_extra_bufts = False`). The verdict is kept per machine
(CPU, llama-cpp-python build, model) in `verdicts_path()`, so later runs skip the probe.

`python -m pipeline.backends.llama_probe serve ARGS...` runs `llama_cpp.server` with the same
verdict applied (ARGS as `python -m llama_cpp.server` takes them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import SynthWarning, UserError

#: a child that neither finishes nor dies in this long is taken as a crash (not remembered)
PROBE_TIMEOUT_S = 300.0
#: long enough (56 tokens) that the prompt is decoded as a batch: llama.cpp's AMX kernels only
#: run on batches of more than one row, so a one-token prompt would pass on a machine that faults
PROBE_PROMPT = (
    "다음은 한국어 질문 목록입니다.\n"
    "1. 오늘 서울 날씨는 어떤가요?\n"
    "2. 점심 메뉴로 무엇을 먹으면 좋을까요?\n"
    "3. 주말에 가족과 갈 만한 곳을 추천해 주세요.\n"
    "4. "
)
#: the failpoint (`pipeline.failpoints`) the child passes between loading and completing; armed
#: as `llama-probe@extra-buffers-on` it fails only the first try, as `llama-probe` both
FAILPOINT = "llama-probe"
#: a build for a generic x86-64 (AVX2, no AMX) instead of for the CPU it was compiled on
REINSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --force-reinstall --no-cache-dir llama-cpp-python'
)

_lock = threading.Lock()
#: verdicts found by this process, by machine key (a second backend on the same model asks again)
_known: dict[str, bool] = {}


def verdicts_path() -> Path:
    """The per-user file of verdicts ($XDG_CACHE_HOME/synth, else ~/.cache/synth)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "synth" / "llama-cpu.json"


def machine_key(model_path: Path) -> str:
    """What the verdict depends on: the CPU and the flags it advertises, the llama.cpp build
    (a reinstall with other CMAKE_ARGS keeps the version but changes the library), the model."""
    import llama_cpp

    cpu = _cpuinfo()
    libraries = sorted((Path(llama_cpp.__file__).parent / "lib").glob("libggml*.so*"))
    build = [llama_cpp.__version__]
    for library in libraries:
        with contextlib.suppress(OSError):
            stat = library.stat()
            build.append(f"{library.name}:{stat.st_size}:{stat.st_mtime_ns}")
    identity = {"cpu": cpu, "build": build, "model": str(model_path.resolve())}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _cpuinfo() -> dict[str, str]:
    """The first processor's model name and flags (the same on every core of a VM)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        for line in lines:
            name, _, value = line.partition(":")
            name = name.strip()
            if name in ("model name", "flags") and name not in found:
                found[name] = value.strip()
            if len(found) == 2:
                break
    if not found:
        import platform

        found["model name"] = f"{platform.machine()} {platform.processor()}"
    return found


def extra_buffers_usable(model_path: Path, threads: int) -> bool:
    """True when the model may load with llama.cpp's extra buffer types on (the default); False
    when a probe child died with them on and lived with them off (said in one warning). Raises
    `UserError` when llama.cpp dies either way."""
    key = machine_key(model_path)
    with _lock:
        if key in _known:
            return _known[key]
        remembered = _read_verdicts().get(key)
        if remembered is not None:
            _known[key] = bool(remembered["extra_buffers"])
            return _known[key]
        usable = _decide(model_path, threads, key)
        _known[key] = usable
        return usable


def _decide(model_path: Path, threads: int, key: str) -> bool:
    first = probe(model_path, threads, extra_buffers=True)
    if first in (WORKED, NO_VERDICT):
        if first == WORKED:
            _remember(key, True, model_path)
        return True
    second = probe(model_path, threads, extra_buffers=False)
    if second not in (WORKED, NO_VERDICT):
        raise UserError(
            f"llama.cpp crashed on this CPU ({first}; again with its extra buffer types off: "
            f"{second}): use `--backend template` (no model) or an API backend such as "
            f"`--backend openai --base-url URL`, or rebuild llama-cpp-python for a generic CPU: "
            f"{REINSTALL}"
        )
    # a hung child may only mean a busy machine: that verdict is not kept, the next run asks again
    kept = first != TIMED_OUT and second == WORKED
    if kept:
        _remember(key, False, model_path)
    warnings.warn(
        SynthWarning(
            f"llama.cpp failed a test completion on this CPU with its extra buffer types (AMX, "
            f"repacked weights) on ({first}); the local model runs with them off"
            + (f" (remembered in {verdicts_path()})" if kept else "")
        ),
        stacklevel=3,
    )
    return False


#: how a probe child ended besides dying by a signal (whose name it is then)
WORKED = "worked"
NO_VERDICT = "failed without a crash"
TIMED_OUT = "timeout"


def probe(model_path: Path, threads: int, extra_buffers: bool) -> str:
    """Load the model and complete a few tokens in a child process: `WORKED`, the signal that
    killed it ("SIGILL"), `TIMED_OUT`, or `NO_VERDICT` when it failed without a crash (a bad model
    file, a missing package): no verdict on the CPU, and the error surfaces where the model is
    loaded for real."""
    module = "pipeline.backends.llama_probe"  # not __name__: that is __main__ under `serve`
    command = [sys.executable, "-m", module, "probe", str(model_path), "--threads", str(threads)]
    if not extra_buffers:
        command.append("--no-extra-buffers")
    try:
        child = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # llama.cpp's notices and the crash dump
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return TIMED_OUT
    if child.returncode == 0:
        return WORKED
    if child.returncode < 0:
        try:
            return signal.Signals(-child.returncode).name
        except ValueError:
            return f"signal {-child.returncode}"
    return NO_VERDICT


def _read_verdicts() -> dict[str, Any]:
    try:
        verdicts = json.loads(verdicts_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return verdicts if isinstance(verdicts, dict) else {}


def _remember(key: str, usable: bool, model_path: Path) -> None:
    """Best effort: a cache directory that cannot be written only means probing again."""
    path = verdicts_path()
    verdicts = _read_verdicts()
    verdicts[key] = {
        "extra_buffers": usable,
        "cpu": _cpuinfo().get("model name", "?"),
        "model": str(model_path),
        "checked": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=".llama-cpu.", delete=False
        ) as handle:
            json.dump(verdicts, handle, indent=2)
        os.replace(handle.name, path)


@contextlib.contextmanager
def without_extra_buffers() -> Iterator[None]:
    """Models loaded inside get `use_extra_bufts = False`. `Llama(...)` takes no such argument;
    it builds its model params from `llama_model_default_params()`, looked up at call time."""
    import llama_cpp.llama_cpp as native

    defaults = native.llama_model_default_params

    def params() -> Any:
        built = defaults()
        built.use_extra_bufts = False
        return built

    native.llama_model_default_params = params
    try:
        yield
    finally:
        native.llama_model_default_params = defaults


def load_llama(model_path: Path, n_ctx: int, threads: int, extra_buffers: bool) -> Any:
    """`llama_cpp.Llama` on `model_path`, with `threads` for decoding and prompt batches."""
    from llama_cpp import Llama

    with contextlib.nullcontext() if extra_buffers else without_extra_buffers():
        return Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )


def _probe_child(model_path: Path, threads: int, extra_buffers: bool) -> None:
    from pipeline import failpoints

    llama = load_llama(model_path, 256, threads, extra_buffers)
    failpoints.reached(FAILPOINT, "extra-buffers-on" if extra_buffers else "extra-buffers-off")
    llama.create_completion(PROBE_PROMPT, max_tokens=4, temperature=0.0, seed=0)


def _serve(arguments: list[str]) -> None:
    """`llama_cpp.server` with this machine's verdict on the model in `--model`."""
    from llama_cpp.server.__main__ import main

    model = Path(arguments[arguments.index("--model") + 1])
    threads = len(os.sched_getaffinity(0))
    usable = extra_buffers_usable(model, threads)
    sys.argv = ["llama_cpp.server", *arguments]
    with contextlib.nullcontext() if usable else without_extra_buffers():
        main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        _probe_child(
            Path(sys.argv[2]),
            int(sys.argv[sys.argv.index("--threads") + 1]),
            "--no-extra-buffers" not in sys.argv,
        )
    elif sys.argv[1:2] == ["serve"]:
        _serve(sys.argv[2:])
    else:
        sys.exit("usage: python -m pipeline.backends.llama_probe serve LLAMA_CPP_SERVER_ARGS...")
