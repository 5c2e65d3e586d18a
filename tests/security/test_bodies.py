"""A stranger cannot make the server receive a body larger than its limit.

Django's ASGI handler reads the whole body before any check: a 200 MiB body with no
credentials was received in full, then refused (413). Now it is refused by its
Content-Length unread, or cut off once it passes the limit when sent without one."""

from __future__ import annotations

import io
import json
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.test import override_settings

from campaigns.models import Campaign
from campaigns.services import create_api_key
from tests.processes import ROOT, child_env, free_port, wait_until_up

MIB = 1024 * 1024
LIMIT = MIB  # API_MAX_BODY_BYTES of the server below


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[int]:
    """uvicorn serving the ASGI application (the Procfile's command); yields its port."""
    port = free_port()
    env = child_env(
        APP_URL=f"http://127.0.0.1:{port}",
        API_MAX_BODY_BYTES=str(LIMIT),
        # Contact files are read at once, in the request (no worker runs here).
        CONTACT_IMPORT_SYNC_MAX_BYTES=str(64 * MIB),
    )
    command = [sys.executable, "-m", "uvicorn", "callcenter.asgi:application"]
    command += ["--port", str(port), "--no-access-log"]
    log = tmp_path / "web.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(log.read_text()[-3000:])


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else {}


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.mark.django_db(transaction=True)
def test_unauthenticated_200_mib_body_is_refused_before_a_byte_is_read(web_server) -> None:
    with socket.create_connection(("127.0.0.1", web_server), timeout=10) as sock:
        # a stranger announces 200 MiB to the API, without credentials, and sends none of it
        sock.sendall(
            b"POST /api/v1/campaigns/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAccept-Language: en\r\n"
            + f"Content-Length: {200 * MIB}\r\n\r\n".encode()
        )
        # the answer comes at once, not after the body
        status, body = _read_response(sock)

    assert status == 413
    assert body["code"] == "too_large"
    assert f"{200 * MIB} bytes" in body["message"] and str(LIMIT) in body["message"]


@pytest.mark.django_db(transaction=True)
def test_chunked_200_mib_body_is_cut_off_at_the_limit(web_server) -> None:
    chunk = b"x" * (64 * 1024)
    sent = 0
    answer = None
    with socket.create_connection(("127.0.0.1", web_server), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/campaigns/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            while sent < 200 * MIB:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered before the end of the body
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            answer = _read_response(sock)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection on the rest of the body

    # far less than 200 MiB went out: the limit, plus what the sockets' buffers hold
    assert sent < LIMIT + 16 * MIB, sent
    if answer is not None:
        assert answer[0] == 413
        assert answer[1]["code"] == "too_large"


@override_settings(API_MAX_BODY_BYTES=MIB, DATA_UPLOAD_MAX_MEMORY_SIZE=MIB)
def test_only_contact_file_uploads_may_send_more_than_the_api_limit(settings) -> None:
    from callcenter.bodies import body_limit

    settings.CONTACT_IMPORT_MAX_BYTES = 512 * MIB
    multipart = "multipart/form-data; boundary=x"

    assert body_limit("/api/v1/campaigns/7/contacts/", multipart) == 512 * MIB
    assert body_limit("/admin/campaigns/contactimport/add/", multipart) == 512 * MIB
    # anywhere else, or not a file, the API's limit
    assert body_limit("/api/v1/campaigns/", multipart) == MIB
    assert body_limit("/admin/login/", multipart) == MIB
    assert body_limit("/api/v1/campaigns/7/contacts/", "application/json") == MIB
    assert body_limit("/api/v1/campaigns/7/contacts/extra/", multipart) == MIB


UPLOAD_ROUTES = ["/api/v1/campaigns/1/contacts/", "/admin/campaigns/contactimport/add/"]
STRANGERS = {
    "no credentials": b"",
    "a made-up key": b"Authorization: Api-Key abcdefgh.0123456789abcdef0123456789abcdef\r\n",
    "a forged JWT": b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.x\r\n",
    "a made-up session": b"Cookie: sessionid=0123456789abcdefghijklmnopqrstuv\r\n",
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", UPLOAD_ROUTES)
def test_a_stranger_gets_the_api_limit_on_the_contact_file_routes_too(web_server, route) -> None:
    # The contact file routes may take CONTACT_IMPORT_MAX_BYTES (512 MiB): only from
    # someone who may send a file, which the headers tell before the body is read.
    for who, credentials in STRANGERS.items():
        with socket.create_connection(("127.0.0.1", web_server), timeout=10) as sock:
            sock.sendall(
                f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                + b"Content-Type: multipart/form-data; boundary=x\r\nAccept-Language: en\r\n"
                + credentials
                + f"Content-Length: {200 * MIB}\r\n\r\n".encode()
            )
            status, body = _read_response(sock)

        assert status == 413, who
        assert str(LIMIT) in body["message"], who


@pytest.mark.django_db(transaction=True)
def test_a_partners_key_may_send_a_contact_file_over_the_api_limit(web_server, campaign) -> None:
    _api_key, key = create_api_key(partner=campaign.partner, name="Uploads")
    # ten contacts, each with a note of 120 KiB: 1.2 MiB, over the API's 1 MiB
    note = "n" * (120 * 1024)
    rows = "".join(f"6000000{index:02};{note}\n" for index in range(10))
    content = f"phone;note\n{rows}".encode()
    assert len(content) > LIMIT

    response = httpx.post(
        f"http://127.0.0.1:{web_server}/api/v1/campaigns/{campaign.pk}/contacts/",
        files={"file": ("contacts.csv", content, "text/csv")},
        headers={"Authorization": f"Api-Key {key}", "Accept-Language": "en"},
        timeout=60,
    )

    assert response.status_code == 201, response.text
    assert response.json()["created"] == 10
    assert Campaign.objects.get(pk=campaign.pk).contacts.count() == 10


class _CountingInput(io.RawIOBase):
    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = b"x" * (65536 if size < 0 else min(size, 65536))
        self.read_bytes += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


@pytest.mark.django_db
def test_wsgi_server_refuses_a_large_body_unread() -> None:
    from callcenter.wsgi import application

    stream = _CountingInput()
    answers = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/admin/login/",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "localhost",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(200 * MIB),
        "wsgi.input": stream,
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }

    body = b"".join(application(environ, lambda status, headers: answers.append(status)))

    assert answers == ["413 Request Entity Too Large"]
    assert json.loads(body)["code"] == "too_large"
    assert stream.read_bytes == 0


@pytest.mark.django_db
def test_only_an_active_users_session_may_send_a_contact_file_in_the_admin(
    client, admin_user
) -> None:
    from django.conf import settings
    from django.test import RequestFactory

    from callcenter.bodies import may_send_a_file

    client.force_login(admin_user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    request = RequestFactory().post(
        "/admin/campaigns/contactimport/add/", content_type="multipart/form-data; boundary=x"
    )
    request.COOKIES[settings.SESSION_COOKIE_NAME] = session
    assert may_send_a_file(request)

    admin_user.is_active = False
    admin_user.save(update_fields=["is_active"])
    assert not may_send_a_file(request)
    request.COOKIES[settings.SESSION_COOKIE_NAME] = "made-up"
    assert not may_send_a_file(request)
