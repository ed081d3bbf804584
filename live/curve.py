"""ZeroMQ CURVE for streams that leave the machine: encryption, and authentication both ways.

Key pairs are files in ZeroMQ's certificate format (``NAME.key`` holds the public key,
``NAME.key_secret`` the public and the secret key), made by ``diffstream keys generate``
(:func:`generate`). The server (detector-sim, replay) holds its own secret file and a folder
of the public keys of the clients it lets in; a client (live, record) holds the server's
public key and its own secret file. Without the server's public key a client cannot even
start the handshake, so it cannot be fooled by another server; a client whose public key
is not in the folder is refused, counted and logged, and receives nothing.

The keys are only ever parsed as text (z85), never executed or unpickled.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger("diffstream.live.curve")


def generate(folder: Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair ``folder/NAME.key`` (public: give it away) and ``folder/NAME.key_secret``
    (keep it; readable by its owner only); refuses to overwrite an existing pair."""
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise FileExistsError(f"{path} exists; keys are never overwritten, choose another name or folder")
    folder.mkdir(parents=True, exist_ok=True)
    made_public, made_secret = (Path(p) for p in zmq.auth.create_certificates(folder, name))
    made_secret.chmod(0o600)
    return made_public, made_secret


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such key file")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a ZeroMQ key file ({error})") from None
    if public is None or (secret and secret_key is None):
        what = "secret key file (NAME.key_secret)" if secret else "public key file (NAME.key)"
        raise ValueError(f"{path}: not a {what}")
    return public, secret_key


@dataclass(frozen=True)
class CurveClient:
    """What a client (a SUB or PULL socket) needs: the server's public key and its own key pair (z85 text)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_key: Path, secret_file: Path) -> CurveClient:
        """From the server's public key file and the client's own secret key file; ValueError or
        FileNotFoundError, naming the file, if either is not what it should be."""
        server_public, _ = _load(server_key, secret=False)
        public, secret = _load(secret_file, secret=True)
        return cls(server_public, public, secret)

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE client; call before it connects."""
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret


class CurveServer:
    """What a server needs: its key pair and the public keys of the clients it lets in.

    ``refused`` counts handshakes refused for an unknown client key (a refused client keeps
    retrying, so one client can add many); the first refusal of each key is logged.
    """

    def __init__(self, public: bytes, secret: bytes, clients: set[bytes]) -> None:
        """Keys in z85 text, as key files hold them and the authenticator passes them."""
        self.public = public
        self.secret = secret
        self.clients = clients
        self.refused = 0
        self._logged: set[bytes] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, secret_file: Path, clients_dir: Path) -> CurveServer:
        """From the server's secret key file and a folder of client public key files (``*.key``)."""
        public, secret = _load(secret_file, secret=True)
        if not clients_dir.is_dir():
            raise FileNotFoundError(f"{clients_dir}: no such folder of client public keys")
        clients = {_load(path, secret=False)[0] for path in sorted(clients_dir.glob("*.key"))}
        if not clients:
            raise ValueError(f"{clients_dir}: holds no client public key (*.key); no client could connect")
        return cls(public, secret, clients)

    def start(self, socket: zmq.Socket, context: zmq.Context) -> ThreadAuthenticator:
        """Make ``socket`` a CURVE server and start the authenticator that vets its clients; call
        before it binds, and stop the returned authenticator before the context is terminated."""
        authenticator = ThreadAuthenticator(context, log=logging.getLogger("diffstream.live.curve.zap"))
        authenticator.start()
        authenticator.configure_curve_callback("*", credentials_provider=self)
        socket.curve_server = True
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret
        return authenticator

    def callback(self, domain: str, client_key: bytes) -> bool:
        """The authenticator's question (``client_key`` in z85): is this client one of ours?"""
        if client_key in self.clients:
            return True
        with self._lock:
            self.refused += 1
            first = client_key not in self._logged
            self._logged.add(client_key)
        if first:
            log.warning("refused a client with an unknown CURVE key %s; add its .key file to the clients "
                        "folder to let it in (further refusals of this key are counted, not logged)",
                        client_key.decode("ascii", "replace"))
        return False
