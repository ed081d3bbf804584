"""What the live window runs, without Qt: receiver, engine and pipeline built from the window's
settings, run in a worker thread, stopped and rebuilt when the user changes them.

Everything here is called from the GUI thread and returns at once or raises
:class:`SessionError` with a one-line reason the window shows; slow work (the pipeline,
saving, a replay server) happens in threads or child processes the window polls, so no
dialog or wait blocks the window while frames arrive.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from diffstream.live.commands.live import DEFAULT_MODEL
from diffstream.live.frame_cache import FrameCache
from diffstream.live.pipeline import LivePipeline

from .window import PipelineWorker


class SessionError(Exception):
    """A setting the session cannot use (a bad URL, a model that does not load); one line."""


@dataclass(frozen=True)
class SessionSettings:
    """What the window's controls choose; ``record`` is the HDF5 file the next receiver records to,
    ``security`` the CURVE client settings (:mod:`diffstream.live.curve`) of ``diffstream gui``'s options."""

    url: str
    model: str = DEFAULT_MODEL
    engine: str = "auto"
    pull: bool = False
    record: Path | None = None
    batch_size: int = 256
    max_wait_s: float = 0.02
    security: object | None = None


class Session:
    """The pipeline on screen and the worker that runs it; restartable with new settings.

    ``generation`` counts the pipelines started, so the window knows when to rebuild what
    depends on the model. ``out_dir``, when given, receives each scan's files as it ends
    (one sub-folder per scan after the first, as ``diffstream live --follow`` does).
    """

    def __init__(self, pipeline: LivePipeline | None = None, *, out_dir: Path | None = None) -> None:
        self.out_dir = out_dir
        self.frame_cache = FrameCache()
        self.pipeline = pipeline
        self.worker: PipelineWorker | None = None
        self.settings: SessionSettings | None = None
        self.generation = 0
        self.save_message = ""
        self._recorder = None
        self._replay: subprocess.Popen | None = None
        self._replay_log: Path | None = None
        self._saving: threading.Thread | None = None
        if pipeline is not None:
            self._adopt(pipeline)

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    def start(self, settings: SessionSettings) -> None:
        """Stop what runs and map ``settings.url`` with the chosen model and engine (all scans, until stopped)."""
        from diffstream.live.receiver import Receiver

        self.stop()
        engine = build_engine(settings.model, settings.engine)
        recorder = _open_recorder(settings.record)
        try:
            receiver = Receiver(settings.url, socket_type="pull" if settings.pull else "sub",
                                batch_size=settings.batch_size, max_wait_s=settings.max_wait_s,
                                tap=None if recorder is None else recorder.on_message, security=settings.security)
        except ValueError as error:
            if recorder is not None:
                recorder.close()
            raise SessionError(str(error)) from None
        self._recorder = recorder
        self.settings = settings
        self._adopt(LivePipeline(receiver, engine, model_name=settings.model, out_dir=self.out_dir, follow=True))
        self.worker.start()

    def start_existing(self) -> None:
        """Run the pipeline the session was made with (``diffstream live`` and ``demo``)."""
        self.worker.start()

    def stop(self) -> None:
        """Stop the pipeline (its scan in progress is kept on screen and saved to ``out_dir``) and the recorder."""
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.worker is not None and self.worker.ident is not None:
            self.worker.join()
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def replay(self, file: Path, settings: SessionSettings) -> SessionSettings:
        """Serve ``file`` with ``diffstream replay`` in a child process on a free loopback port
        and map it; returns the settings used (their URL is the child's)."""
        from diffstream.live.commands.demo import die_with_parent, free_tcp_port

        if not file.is_file():
            raise SessionError(f"no file at {file}")
        self.stop()
        self._stop_replay()
        url = f"tcp://127.0.0.1:{free_tcp_port()}"
        log = tempfile.NamedTemporaryFile(prefix="diffstream-replay-", suffix=".log", delete=False)
        self._replay_log = Path(log.name)
        self._replay = subprocess.Popen(
            [sys.executable, "-m", "diffstream.live.cli", "replay", str(file), "--bind", url],
            stdout=subprocess.DEVNULL, stderr=log, preexec_fn=die_with_parent)
        log.close()
        settings = replace(settings, url=url, pull=False, security=None)
        self.start(settings)
        return settings

    def replay_problem(self) -> str | None:
        """Why the replay server exited with an error (its last line of output), else None."""
        if self._replay is None or self._replay.poll() in (None, 0):
            return None
        lines = [line for line in self._replay_log.read_text(errors="replace").splitlines() if line.strip()]
        return f"replay of the file failed: {lines[-1] if lines else f'exit code {self._replay.returncode}'}"

    def save(self, folder: Path) -> None:
        """Write the map on screen into ``folder`` in a background thread; :attr:`save_message`
        says where it went or why it could not be written."""
        if self.pipeline is None:
            self.save_message = "nothing to save: no scan has started yet"
            return
        if self._saving is not None and self._saving.is_alive():
            self.save_message = "still saving the previous save"
            return
        pipeline = self.pipeline
        self.save_message = f"saving to {folder}…"

        def write() -> None:
            try:
                pipeline.save(folder)
            except LookupError as error:
                self.save_message = f"nothing to save: {error}"
            except OSError as error:
                self.save_message = f"could not save to {folder}: {error}"
            else:
                self.save_message = f"saved to {folder}"

        self._saving = threading.Thread(target=write, name="diffstream-save", daemon=True)
        self._saving.start()

    def wait_for_save(self, timeout: float | None = None) -> None:
        if self._saving is not None:
            self._saving.join(timeout)

    def close(self) -> None:
        """Stop everything the session started, the replay server included."""
        self.stop()
        self.wait_for_save()
        self._stop_replay()

    def _adopt(self, pipeline: LivePipeline) -> None:
        self.frame_cache.clear()
        pipeline.frame_cache = self.frame_cache
        self.pipeline = pipeline
        self.worker = PipelineWorker(pipeline)
        self.generation += 1

    def _stop_replay(self) -> None:
        if self._replay is not None:
            if self._replay.poll() is None:
                self._replay.terminate()
                try:
                    self._replay.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._replay.kill()
                    self._replay.wait()
            self._replay = None
        if self._replay_log is not None:
            self._replay_log.unlink(missing_ok=True)
            self._replay_log = None


def build_engine(model: str, backend: str) -> object:
    """The engine for ``model`` (a shipped name or ONNX file) on ``backend``; a model that does
    not load is a :class:`SessionError` naming the file and the reason."""
    from diffstream.engines import EngineError, ModelCardError, create_engine

    try:
        return create_engine(model, backend)
    except (EngineError, ModelCardError, OSError) as error:
        raise SessionError(f"cannot load model {model}: {error}") from None


def default_recording() -> Path:
    """Where the window records when the user turns recording on: a new file in the working folder."""
    return Path("diffstream-recordings") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}.h5"


def _open_recorder(path: Path | None) -> object | None:
    if path is None:
        return None
    from diffstream.live.recorder import Recorder

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Recorder(path)
    except OSError as error:
        raise SessionError(f"cannot record to {path}: {error}") from None
