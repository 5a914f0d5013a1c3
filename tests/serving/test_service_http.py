"""``cdml serve`` over HTTP, as a script uses it (httpx): search by upload, vector and item,
facts, thumbnails, and every bad request refused with a 4xx while the service keeps serving."""

import hashlib
import io
import signal
import threading
import time

import httpx
import pytest
from PIL import Image

from .conftest import start_server


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def upload(path):
    return {"file": (path.name, path.read_bytes(), "image/png")}


def test_search_by_upload_finds_the_uploaded_indexed_image_first(server, digit_images):
    query = sorted(digit_images.iterdir())[7]
    with server.client() as client:
        answer = client.post("/search", params={"k": 5}, files=upload(query))
    assert answer.status_code == 200, answer.text
    neighbours = answer.json()["neighbours"]
    assert [n["rank"] for n in neighbours] == [1, 2, 3, 4, 5]
    assert neighbours[0]["path"].endswith(query.name) and neighbours[0]["score"] < 1e-3
    scores = [n["score"] for n in neighbours]
    assert scores == sorted(scores)


def test_vector_item_and_upload_searches_agree(server, digit_images):
    query = sorted(digit_images.iterdir())[11]
    with server.client() as client:
        embedded = client.post("/embed", files=upload(query)).json()
        vector = embedded["embeddings"][0]
        by_vector = client.post("/search/vector", json={"vector": vector, "k": 4})
        by_upload = client.post("/search", params={"k": 4}, files=upload(query))
        first = by_upload.json()["neighbours"][0]
        by_item = client.get(f"/search/item/{first['id']}", params={"k": 4})
        item = client.get(f"/items/{first['id']}").json()
    ids = [[n["id"] for n in r.json()["neighbours"]] for r in (by_vector, by_upload, by_item)]
    assert ids[0] == ids[1] == ids[2]
    assert item == {"id": first["id"], "path": first["path"], "label": -1}
    assert embedded["dim"] == len(embedded["embeddings"][0]) == 64


def test_facts_name_the_checkpoint_and_the_index(server, tiny_checkpoint):
    with server.client() as client:
        facts = client.get("/info").json()
        assert client.get("/health").json() == {"status": "ok"}
        schema = client.get("/openapi.json").json()
    digest = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert facts["checkpoint_sha256"] == digest
    assert (facts["index_size"], facts["embedding_size"], facts["metric"]) == (60, 64, "l2")
    assert {"/search", "/search/vector", "/embed", "/info"} <= set(schema["paths"])


def test_thumbnails_come_from_indexed_items_only(server):
    with server.client() as client:
        thumbnail = client.get("/items/3/thumbnail", params={"size": 64})
        outside = client.get("/items/60/thumbnail")
        path_like = client.get("/items/..%2F..%2Fetc%2Fpasswd/thumbnail")
    assert thumbnail.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 64
    assert outside.status_code == 404 and "ids 0-59" in outside.json()["error"]
    assert path_like.status_code in (404, 422)


def bomb() -> bytes:
    """A PNG of 10,000 x 10,000 pixels in a few kilobytes (over the 40 M pixel limit)."""
    return png(Image.new("1", (10_000, 10_000)))


def big_body():
    """200 MB, sent in chunks without a length (the service stops reading at its limit)."""
    chunk = b"\0" * (1 << 20)
    for _ in range(200):
        yield chunk


def test_bad_requests_get_a_4xx_naming_the_problem_and_the_service_keeps_serving(
    server, digit_images
):
    query = sorted(digit_images.iterdir())[0]
    wrong = {"Authorization": "Bearer not-the-token"}
    with server.client() as client, httpx.Client(base_url=server.url, timeout=60) as stranger:
        refusals = {
            "no token": stranger.get("/info"),
            "wrong token": stranger.get("/info", headers=wrong),
            "k=0": client.post("/search", params={"k": 0}, files=upload(query)),
            "k=10^9": client.post("/search", params={"k": 10**9}, files=upload(query)),
            "not an image": client.post("/search", files={"file": ("a.png", b"%PDF-1.4 x")}),
            "no file": client.post("/search"),
            "bomb": client.post("/search", files={"file": ("bomb.png", bomb())}),
            "vector size": client.post("/search/vector", json={"vector": [1.0, 2.0]}),
            "vector nan": client.post("/search/vector", content=b'{"vector": [NaN]}',
                                      headers={"content-type": "application/json"}),
            "too large": client.post("/search", files={"file": ("x.png", b"\0" * 3_000_000)}),
        }  # fmt: skip
        try:
            chunked = client.post("/embed", content=big_body())
            refusals["200 MB, chunked"] = chunked
        except httpx.TransportError:  # the service may close while the client still sends
            pass
        after = client.post("/search", params={"k": 1}, files=upload(query))
    for what, answer in refusals.items():
        assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text)
        message = answer.json()["error"]
        assert message and "Traceback" not in message, what
    assert refusals["no token"].status_code == refusals["wrong token"].status_code == 401
    assert refusals["k=10^9"].status_code == 422 and "between 1 and 1000" in refusals["k=10^9"].text
    assert refusals["bomb"].status_code == 413 and "pixels" in refusals["bomb"].text
    assert refusals["too large"].status_code == 413
    assert "64-d" in refusals["vector size"].json()["error"]
    assert after.status_code == 200 and after.json()["neighbours"][0]["score"] < 1e-3


def test_the_token_in_the_url_sets_a_cookie_for_the_page(server):
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        page = browser.get("/", params={"token": server.token})
        info = browser.get("/info")  # the cookie alone
    assert page.status_code == 200 and "cdml search" in page.text
    assert info.status_code == 200 and info.json()["index_size"] == 60


def test_sigterm_lets_the_request_in_flight_finish(digit_index, tiny_checkpoint, digit_images):
    server = start_server(digit_index, tiny_checkpoint, token=None)
    query = sorted(digit_images.iterdir())[3].read_bytes()
    boundary = "cdml-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"q.png\"\r\nContent-Type: image/png\r\n\r\n").encode()  # fmt: skip
    body = head + query + f"\r\n--{boundary}--\r\n".encode()

    def slowly():  # the upload lasts about 1.5 s: it is in flight when SIGTERM comes
        for start in range(0, len(body), len(body) // 6 + 1):
            time.sleep(0.25)
            yield body[start : start + len(body) // 6 + 1]

    answers = []
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    request = threading.Thread(target=lambda: answers.append(httpx.post(
        f"{server.url}search", content=slowly(), headers=headers, timeout=60)))  # fmt: skip
    request.start()
    time.sleep(0.6)
    server.process.send_signal(signal.SIGTERM)
    request.join(timeout=60)
    code = server.process.wait(timeout=60)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    assert answers[0].json()["neighbours"][0]["score"] < 1e-3
    assert code in (0, -signal.SIGTERM)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}health", timeout=5)
    log = server.process.stderr.read()
    assert "POST /search 200" in log and "Traceback" not in log


def test_a_bad_start_is_one_line_and_exit_2(digit_index, tiny_checkpoint, tmp_path, capsys):
    from cdml.cli import main

    checkpoint = str(tiny_checkpoint)
    starts = {
        "no such checkpoint file": ["--index", str(digit_index), "--checkpoint", str(tmp_path)],
        "not a cdml index folder": ["--index", str(tmp_path), "--checkpoint", checkpoint],
        "--host must be an IP address": ["--index", str(digit_index), "--checkpoint",
                                         checkpoint, "--host", "localhost:80"],
        "give either --checkpoint or --model": ["--index", str(digit_index)],
        "--port must be between 0 and 65535": ["--index", str(digit_index), "--checkpoint",
                                               checkpoint, "--port", "99999"],
    }  # fmt: skip
    for message, argv in starts.items():
        assert main(["serve", *argv]) == 2, message
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
