"""Every real-time type recorded, with the items of its kind (issue 13 item 3): the REG the recorder sends for a
mixed set of types (literal frames), how the entries are spread over connections, and end to end on loopback:
``record --types 0B,0D,0H,1h,0J`` of a replayed day stores the 0H, 1h and 0J frames, ``rows`` returns exactly
them, and a replay of the recording sends them back byte-exact.

The day is written by the real Store from the official examples (docs/protocol.md 2.4, spec/realtime-types.json).
Loopback only, port 0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from _cli import cli_argv
from kiwoom_tape.recorder.plan import PlanError, connection_entries, subscriptions
from kiwoom_tape.replay.catalog import connect as catalog
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.server import serve
from kiwoom_tape.schemas.protocol import ClientSession, ServerSession, Subscription, encode
from test_catalog import book_values, kst_ns
from test_replay_recorded import login_reg, recv_reals
from websockets.asyncio.client import connect

from kiwoom_tape.testing import read_table as table

DAY = dt.date(2026, 3, 10)
LOGIN_OK = '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}'
REG_OK = '{"trnm":"REG","return_code":0,"return_msg":""}'

# The official examples' values (spec/realtime-types.json "example"), one row each
VALUES_0H = {"20": "110206", "10": "+60500", "11": "+200", "12": "+0.33", "15": "-7805", "13": "768293", "25": "2"}
VALUES_1H = {"9001": "005930", "302": "삼성전자", "13": "1077818", "14": "4201", "9068": "1", "9008": "101",
             "9075": "1", "1221": "4125", "1223": "111454", "1224": "111703", "1225": "정적", "1236": "3750",
             "1237": "0", "1238": "+10.00", "1239": "0.00", "1489": "+10.00", "1490": "1", "9069": "1",
             "1279": "+정적"}
VALUES_0J = {"20": "110430", "10": "-1762.61", "11": "-189.51", "12": "-9.71", "15": "2800", "13": "725277",
             "14": "60711859", "16": "-1949.04", "17": "+1961.28", "18": "-1756.13", "25": "5", "26": "-1482363"}
VALUES_0E = {"21": "165208", "131": "43955", "132": "+156", "135": "0", "136": "0"}
NAMES = {"0H": "주식예상체결", "1h": "VI발동/해제", "0J": "업종지수", "0E": "주식시간외호가", "0D": "주식호가잔량"}


def logged_in(session: ClientSession, subs: tuple[Subscription, ...]) -> list[str | bytes]:
    """What ``session`` sends once logged in, subscribed as :class:`kiwoom_tape.recorder.connection.Connection` does."""
    session.connect(0.0)
    for sub in subs:
        session.subscribe(sub.items, sub.types)
    session.data_to_send()  # LOGIN
    session.receive(LOGIN_OK, 0.0)
    return session.data_to_send()


# --------------------------------------------------------------------------------------------------
# The REG of a mixed set, literally


def test_a_mixed_set_is_one_reg_with_one_data_entry_per_kind_of_item() -> None:
    subs = subscriptions(["0B", "0D", "0H", "1h", "0J"], ["005930", "000660_NX"], ["001", "101"])
    assert logged_in(ClientSession(token="t"), subs) == [
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":['
        '{"item":["005930","000660_NX"],"type":["0B","0D","0H"]},'
        '{"item":[""],"type":["1h"]},'
        '{"item":["001","101"],"type":["0J"]}]}'
    ]


def test_entries_fill_batches_of_50_items_and_a_reconnect_sends_the_same() -> None:
    stocks = [f"{n:06d}" for n in range(1, 121)]
    subs = subscriptions(["0D", "1h", "0U", "0I"], stocks, ["001"])
    session = ClientSession(token="t")
    first = logged_in(session, subs)
    assert first == [
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":' + json.dumps(stocks[:50]).replace(" ", "")
        + ',"type":["0D"]}]}'
    ]
    sent = list(first)
    now = 0.0
    while session.registration_pending:
        now += 1.0
        assert session.receive(REG_OK, now)[0].return_code == 0  # type: ignore[union-attr]
        sent += session.data_to_send()
    items = json.dumps(stocks[100:]).replace(" ", "")
    assert sent[1:] == [
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":' + json.dumps(stocks[50:100]).replace(" ", "")
        + ',"type":["0D"]}]}',
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":' + items + ',"type":["0D"]},'
        '{"item":[""],"type":["1h"]},{"item":["001"],"type":["0U"]},{"item":["MGD","MGU"],"type":["0I"]}]}',
    ]
    session.closed()
    session.connect(now)
    session.data_to_send()
    session.receive(LOGIN_OK, now)
    again = session.data_to_send()
    while session.registration_pending:
        now += 1.0
        session.receive(REG_OK, now)
        again += session.data_to_send()
    assert again == sent  # a reconnect registers the very same


def test_remove_of_the_empty_item_and_an_acked_mixed_reg_event() -> None:
    session = ClientSession(token="t")
    logged_in(session, subscriptions(["0B", "1h"], ["005930"], []))
    (done,) = session.receive(REG_OK, 1.0)
    assert done.items == ("005930", "") and done.types == ("0B", "1h")  # type: ignore[union-attr]
    assert done.entries == (Subscription(("005930",), ("0B",)), Subscription(("",), ("1h",)))  # type: ignore[union-attr]
    session.unsubscribe([""], ["1h"], 2.0)
    assert session.data_to_send() == ['{"trnm":"REMOVE","grp_no":"1","data":[{"item":[""],"type":["1h"]}]}']
    assert set(session.subscribed) == {("005930", "0B")}


def test_the_empty_item_takes_no_slot_and_covers_every_item_of_its_type() -> None:
    stocks = [f"{n:06d}" for n in range(1, 201)]
    client = ClientSession(token="t")
    client.subscribe(stocks, ["0D"])
    client.subscribe([""], ["1h", "0s"])  # 200 stock items and the empty one: within the cap
    server = ServerSession(now=0.0)
    server.receive('{"trnm":"LOGIN","token":"t"}', 0.0)
    server.receive(encode({"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [
        {"item": stocks, "type": ["0D"]}, {"item": [""], "type": ["1h"]}, {"item": ["001"], "type": ["0J"]},
    ]}), 0.0)
    assert server.data_to_send()[-1] == '{"trnm":"REG","return_code":105115,"return_msg":"등록 허용 개수(200) 초과"}'
    server.receive(encode({"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [
        {"item": stocks, "type": ["0D"]}, {"item": [""], "type": ["1h"]},
    ]}), 1.0)
    assert server.data_to_send()[-1] == REG_OK
    assert server.wants("000660", "1h") and server.wants("", "1h")  # every VI, whichever stock it names
    assert not server.wants("000660", "0D") and not server.wants("000660", "0s")


# --------------------------------------------------------------------------------------------------
# Over connections


def test_other_entries_go_on_the_first_connection_counted_in_its_200() -> None:
    stocks = [f"{n:06d}" for n in range(1, 6)]
    plan = connection_entries(["0B", "1h", "0J"], stocks, ["001", "101"], 3)
    assert plan == [  # 7 items over 3 connections: 3, 2, 2, the first holding the 2 industries
        (Subscription(("000001",), ("0B",)), Subscription(("",), ("1h",)), Subscription(("001", "101"), ("0J",))),
        (Subscription(("000002", "000003"), ("0B",)),),
        (Subscription(("000004", "000005"), ("0B",)),),
    ]
    assert connection_entries(["1h", "0s"], [], [], 2) == [(Subscription(("",), ("1h", "0s")),)]
    with pytest.raises(PlanError, match="401 items need 3 connections"):
        connection_entries(["0D", "0J"], [f"{n:06d}" for n in range(399)], ["001", "101"], 2)
    assert sum(len(e.items) for e in connection_entries(["0D", "0J"], [f"{n:06d}" for n in range(398)],
                                                        ["001", "101"], 2)[0]) == 200


# --------------------------------------------------------------------------------------------------
# End to end: record a replayed day with 0H, 1h and 0J, query it, replay it


def real(rows: list[tuple[str, str, dict[str, str]]]) -> str:
    return encode({"data": [{"values": v, "type": t, "name": NAMES[t], "item": i} for t, i, v in rows],
                   "trnm": "REAL"})


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """(dataset, its REAL frames in order): 0H, 1h (of a registered stock and of another), 0J, 0D, and 0E rows
    (a type the recorder below does not register)."""
    from kiwoom_tape.recorder.store import Store

    root = tmp_path_factory.mktemp("every-type")
    frames = [
        real([("0H", "005930", VALUES_0H)]),
        real([("1h", "005930", VALUES_1H)]),
        real([("0J", "001", VALUES_0J)]),
        real([("0D", "005930", book_values(60500, 60600, 10, 10, time="085959"))]),
        real([("0H", "005930", VALUES_0H | {"20": "110207", "13": "768300"}),
              ("1h", "000660", VALUES_1H | {"9001": "000660", "302": "SK하이닉스"})]),
        real([("0E", "005930", VALUES_0E)]),
    ]
    with Store(root, "tape") as store:
        for n, text in enumerate(frames):
            store.add_frame(kst_ns(DAY, "09:00:00") + n * 10_000_000, "in", text)
    return root, frames


def rows_of(frames: list[str], real_type: str) -> list[tuple[str, dict[str, str]]]:
    return [(r["item"], r["values"]) for f in frames for r in json.loads(f)["data"] if r["type"] == real_type]


def test_record_every_type_then_query_and_replay_it_byte_exact(day: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, frames = day
    out = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIWOOM_")}  # a loopback mock needs none

    async def record() -> tuple[int, str]:
        async with serve(RecordedSource(root, speed=None, start_delay=0.3), port=0) as server:
            cmd = cli_argv("record", "--items", "005930", "--types", "0B,0D,0H,1h,0J", "--industries", "001",
                           "--url", server.url, "--out", str(out), "--duration", "3s", "-q")
            proc = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
        return proc.returncode or 0, err.decode()

    code, err = asyncio.run(asyncio.wait_for(record(), 45))
    assert code == 0, err
    stored = sorted(table(out, "frames"), key=lambda r: r["seq"])
    regs = [r["text"] for r in stored if r["direction"] == "out" and r["trnm"] == "REG"]
    assert regs == ['{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930"],"type":["0B","0D","0H"]},'
                    '{"item":[""],"type":["1h"]},{"item":["001"],"type":["0J"]}]}']
    recorded = [r["text"] for r in stored if r["direction"] == "in" and r["trnm"] == "REAL"]
    assert recorded == frames[:-1]  # every registered frame, byte for byte; not the 0E one

    con = catalog(out)
    for real_type in ("0H", "1h", "0J"):
        got = con.execute(f"""SELECT item, map_keys("values"), map_values("values") FROM rows
                              WHERE type = '{real_type}' ORDER BY frame_seq, row_idx""").fetchall()
        assert got == [(i, list(v), list(v.values())) for i, v in rows_of(frames, real_type)], real_type
    assert len(table(out, "orderbook")) == 1

    async def replay() -> list[str]:
        async with serve(RecordedSource(out, speed=None, start_delay=0.3), port=0) as server, \
                connect(server.url) as ws:
            await login_reg(ws, ["005930"], ["0H"])
            await login_reg(ws, [""], ["1h"], login=False)
            return await recv_reals(ws, 3, quiet=0.5)

    got = asyncio.run(asyncio.wait_for(replay(), 30))
    assert got[:2] == [frames[0], frames[1]]  # frames of registered rows only: the very bytes
    assert json.loads(got[2])["data"] == json.loads(frames[4])["data"]  # 1h of 000660 too: the empty item is every VI
    assert got[2] == frames[4]



def test_the_mock_sends_a_client_of_the_empty_item_every_item_s_rows_of_that_type() -> None:
    """The per-batch path (:meth:`Server.dispatch`, the simulator's): 1h registered with ``""`` gets each VI row,
    whatever stock it names, and only the rows of 0D it registered."""
    from kiwoom_tape.schemas.protocol import encode_real_frame
    from test_server import ManualSource, login, reg, row, with_server

    async def t(server: Any, source: ManualSource) -> None:
        async with connect(server.url) as ws:
            await login(ws)
            assert (await reg(ws, ["005930"], ["0D"]))["return_code"] == 0
            assert (await reg(ws, [""], ["1h"]))["return_code"] == 0
            mixed = [row("000660", "1h"), row("000660", "0D"), row("005930", "0D", 1)]
            alone = [row("035420", "1h", 2)]
            for batch in (mixed, alone, [row("000660", "0D", 3)], [row("000660", "0J", 4)], alone):
                await source.queue.put(batch)
            want = [encode_real_frame([mixed[0].text, mixed[2].text]), encode_real_frame([alone[0].text])]
            want.append(want[1])
            assert await recv_reals(ws, len(want), quiet=0.3) == want  # the 0D of 000660 and the 0J: not sent

    with_server(t)


def test_each_key_registers_its_own_account_types_and_the_market_wide_ones_once() -> None:
    plan = connection_entries(["0D", "00", "1h"], ["005930", "000660"], [], 2)
    assert plan == [
        (Subscription(("005930",), ("0D",)), Subscription(("",), ("00", "1h"))),
        (Subscription(("000660",), ("0D",)), Subscription(("",), ("00",))),
    ]


def test_every_reconnect_registers_the_same_entries(tmp_path: Path) -> None:
    from kiwoom_tape.recorder.auth import token_provider_from_env
    from kiwoom_tape.recorder.backoff import ReconnectPolicy
    from kiwoom_tape.recorder.client import Recorder
    from kiwoom_tape.recorder.store import Store
    from test_server import ManualSource

    from kiwoom_tape.testing import run_recorder

    (stocks, rest) = subscriptions(["0D", "0s", "1h"], ["005930", "000660_NX"], [])
    want = ('{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930","000660_NX"],"type":["0D"]},'
            '{"item":[""],"type":["0s","1h"]}]}')

    async def main() -> None:
        async with serve(ManualSource(), port=0) as server:
            store = Store(tmp_path, "run")
            store.open()
            rec = Recorder(server.url, stocks.items, stocks.types, store, token_provider_from_env(server.url, {}),
                           policy=ReconnectPolicy(base=0.05, cap=0.2), also=[rest])

            async def drops(rec: Recorder) -> None:
                def logged_in(n: int) -> bool:  # connection n + 1 sent LOGIN and REG and got both replies
                    return rec.stats.connects == n + 1 and rec.store.stats.frames >= 4 * (n + 1)

                for n in range(3):
                    while not logged_in(n):  # noqa: ASYNC110  # counters of other tasks, no event to wait on
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.2)
                    if n < 2:
                        assert await server.drop_all(1011, f"fault {n}") == 1

            await run_recorder(rec, drops)

    asyncio.run(asyncio.wait_for(main(), 30))
    out = sorted(table(tmp_path, "frames"), key=lambda r: r["seq"])
    assert [r["text"] for r in out if r["direction"] == "out" and r["trnm"] == "REG"] == [want] * 3
