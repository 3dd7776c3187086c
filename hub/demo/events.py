"""Events with timelines: each one a walk through the state machine of hub/events/states.py.

A story picks where the event ends (its status), the actions that lead there, and then times the
steps backwards from the anchor, so open events are recent and closed ones older. The event row's
derived fields (accepted_at, resolved_at, closed_at, department, version, updated_at) are
replayed from the timeline with the same rules as hub.events.service.transition. Titles and
descriptions name places (compounds, buildings, roads), never residents.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hub.demo.names import Weighted, pick
from hub.demo.people import Census
from hub.demo.world import DEPARTMENTS, Node, World
from hub.events.states import Action, Status, next_status

HOUR = 3600
DAY = 24 * HOUR
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # the service's: no 0/O/1/I
SYSTEMS = Weighted([("12345-hotline", 85), ("video-patrol", 15)])

CATEGORIES = Weighted(
    [
        ("sanitation", 18),
        ("infrastructure", 14),
        ("environment", 12),
        ("public_safety", 10),
        ("dispute", 10),
        ("housing", 10),
        ("fire_hazard", 9),
        ("elderly_care", 8),
        ("health", 5),
        ("other", 4),
    ]
)
# Which departments handle a category, the usual one first.
HANDLERS = {
    "public_safety": ("public_security",),
    "fire_hazard": ("public_security", "urban_management"),
    "sanitation": ("urban_management", "environment"),
    "infrastructure": ("urban_management",),
    "environment": ("environment", "urban_management"),
    "health": ("health",),
    "elderly_care": ("civil_affairs", "health"),
    "dispute": ("community_service", "public_security"),
    "housing": ("community_service", "urban_management"),
    "other": ("community_service",),
}
SEVERITIES = {
    "fire_hazard": Weighted([("medium", 3), ("high", 5), ("critical", 2)]),
    "public_safety": Weighted([("low", 2), ("medium", 5), ("high", 3)]),
}
DEFAULT_SEVERITY = Weighted([("low", 3), ("medium", 5), ("high", 2)])
# Deadlines by severity: (chance the event has one, time allowed from the report)
DEADLINES = {"critical": (1.0, DAY), "high": (0.8, 3 * DAY), "medium": (0.5, 7 * DAY)}
DEFAULT_DEADLINE = (0.3, 15 * DAY)

TEXTS: dict[str, list[tuple[str, str]]] = {
    "public_safety": [
        ("{compound}北门门禁损坏", "小区北门门禁系统损坏多日，外来人员可随意进出，存在安全隐患。"),
        ("{place}附近有人兜售不明保健品", "有人在{place}附近向老年人推销所谓保健品，疑似诈骗。"),
        ("{road}电动车逆行严重", "早晚高峰{road}电动车逆行、闯红灯现象突出，容易发生事故。"),
        ("{compound}监控摄像头损坏", "小区主路两处监控摄像头损坏，夜间无法看清画面。"),
    ],
    "fire_hazard": [
        ("{place}楼道堆放杂物", "{place}楼道内堆放纸箱、旧家具，堵塞消防通道。"),
        ("{place}电动自行车入户充电", "发现有电动自行车推入楼道内充电，存在火灾隐患。"),
        ("{compound}消防通道被占用", "小区消防通道长期被私家车占用，消防车无法通行。"),
        ("{place}灭火器过期", "{place}各楼层灭火器压力不足、已过有效期，需更换。"),
    ],
    "sanitation": [
        ("{place}旁垃圾桶满溢", "垃圾桶已满溢一天以上，周边有异味，请尽快清运。"),
        ("{compound}建筑垃圾乱堆", "装修产生的建筑垃圾堆放在绿地旁，未及时清运。"),
        ("{road}沿线垃圾分类投放混乱", "{road}沿线分类垃圾桶混投严重，桶站周边脏乱。"),
        ("{compound}化粪池冒溢", "小区化粪池冒溢，污水流到路面，气味较大。"),
    ],
    "infrastructure": [
        ("{road}井盖缺失", "{road}人行道上一处井盖缺失，已临时放置警示物，需尽快补装。"),
        ("{road}路面塌陷", "{road}一段路面出现塌陷坑，直径约半米，影响车辆通行。"),
        ("{compound}路灯不亮", "小区内主路多盏路灯不亮，夜间出行不便。"),
        ("{place}单元门损坏", "{place}单元门闭门器损坏，门无法关闭。"),
    ],
    "environment": [
        ("{road}餐饮油烟扰民", "{road}沿街餐馆油烟直排，周边居民开窗即闻到油烟味。"),
        ("{compound}周边夜间施工噪声", "小区周边工地夜间22点后仍在施工，噪声扰民。"),
        ("{road}附近河道漂浮物", "河道内漂浮垃圾较多，局部水面发黑有异味。"),
        ("{compound}绿地树木被砍伐", "小区绿地内有树木被擅自砍伐，请核实是否有审批手续。"),
    ],
    "health": [
        ("{compound}发现死亡鸟类", "小区绿地发现多只死亡鸟类，请相关部门处理并排查。"),
        ("{compound}地下室蚊蝇滋生", "地下室积水，蚊蝇滋生严重，请求消杀。"),
        ("{road}临街门店疑似无证行医", "{road}一临街门店疑似无证行医，请卫生部门核查。"),
    ],
    "elderly_care": [
        ("{compound}独居老人助餐需求", "网格走访发现辖区独居老人有助餐需求，请协调老年餐桌服务。"),
        ("{place}适老化改造申请", "居民申请楼道加装扶手等适老化改造，请核实并协助办理。"),
        (
            "{compound}老年人日间照料需求",
            "多户居民反映家中失能老人白天无人照料，希望开设日间照料服务。",
        ),
    ],
    "dispute": [
        ("{place}邻里漏水纠纷", "楼上卫生间漏水影响楼下住户，双方协商未果，请求调解。"),
        ("{compound}停车位纠纷", "小区内因地面停车位归属产生纠纷，双方情绪激动。"),
        ("{place}楼上噪音纠纷", "楼上夜间噪音较大，楼下住户多次沟通无果。"),
        ("{compound}物业费纠纷", "部分业主对物业服务不满拒交物业费，物业与业主矛盾激化。"),
    ],
    "housing": [
        ("{place}电梯频繁故障", "{place}电梯本月多次停运，有老人被困，请督促维保单位检修。"),
        ("{place}屋顶漏水", "顶层住户反映雨后屋顶漏水，墙面发霉。"),
        ("{place}外墙保温层脱落", "外墙保温层局部脱落，存在高空坠物风险。"),
        ("{compound}违章搭建", "小区一层有私搭乱建，侵占公共绿地。"),
    ],
    "other": [
        ("{compound}门口共享单车乱停放", "小区门口共享单车大量堆放，影响通行。"),
        ("{road}流浪犬出没", "{road}附近有多只流浪犬出没，居民担心伤人。"),
        ("{compound}增设快递柜建议", "居民希望在小区内增设智能快递柜。"),
    ],
}
NOTES = {
    Action.ACCEPT: ("已受理", "已受理，网格员将到现场核实", "已受理，已电话联系反映人"),
    Action.DISPATCH: ("派发至{department}处置", "转{department}办理"),
    Action.START: ("已到现场处置", "已安排人员处理", "已联系责任单位"),
    Action.RESOLVE: ("已处置完毕", "问题已解决，现场已恢复", "已协调相关单位完成整改"),
    Action.CLOSE: ("回访反映人，表示满意", "经核查整改到位，结案"),
    Action.REJECT: (
        "经现场核实，情况不属实",
        "重复上报，已合并处理",
        "不属于本网格管辖范围，已告知",
    ),
    Action.REOPEN: ("回访不满意，问题仍存在", "问题复发，重新办理"),
    Action.NOTE: (
        "已电话联系物业",
        "现场拍照取证",
        "等待配件到货",
        "已协调社区居委会",
        "需多部门联合处置，已上报街道",
    ),
}
REDISPATCH_NOTE = "原承办部门反馈不属职责范围，改派{department}"
# How long each step takes after the one before it: (shortest, longest) in seconds.
STEP_TIMES = {
    Action.ACCEPT: (5 * 60, 6 * HOUR),
    Action.DISPATCH: (10 * 60, DAY),
    Action.START: (30 * 60, 2 * DAY),
    Action.RESOLVE: (HOUR, 5 * DAY),
    Action.CLOSE: (2 * HOUR, 3 * DAY),
    Action.REJECT: (10 * 60, DAY),
    Action.REOPEN: (6 * HOUR, 5 * DAY),
}
# How long before the anchor the last step happened, by final status: open events are recent.
LAST_STEP_AGE = {
    Status.RESOLVED: (HOUR, 6 * DAY),
    Status.CLOSED: (DAY, 80 * DAY),
    Status.REJECTED: (HOUR, 40 * DAY),
}
OPEN_AGE = (10 * 60, 4 * DAY)
FINAL_STATUSES = Weighted(
    [
        (Status.REPORTED, 10),
        (Status.ACCEPTED, 8),
        (Status.DISPATCHED, 12),
        (Status.IN_PROGRESS, 14),
        (Status.RESOLVED, 12),
        (Status.CLOSED, 32),
        (Status.REJECTED, 6),
        (Status.REOPENED, 6),
    ]
)
_WORK = [Action.ACCEPT, Action.DISPATCH, Action.START, Action.RESOLVE]


def event_count(residents: int) -> int:
    return min(5000, 250 + residents // 200)


@dataclass(slots=True)
class Step:
    action: Action
    from_status: Status | None
    to_status: Status
    actor: str
    note: str
    department_id: int | None
    at: datetime


@dataclass(slots=True)
class Story:
    category: str
    severity: str
    title: str
    description: str
    grid: Node
    location: tuple[float, float] | None
    reporter: tuple[str, int | str]  # ("member", id) | ("resident", id) | ("system", name)
    steps: list[Step] = field(default_factory=list)
    deadline: datetime | None = None

    @property
    def status(self) -> Status:
        return self.steps[-1].to_status

    @property
    def reported_at(self) -> datetime:
        return self.steps[0].at


def plan(rng: random.Random, final: Status) -> list[Action]:
    """Actions after the report that end in `final`, checked against the state machine."""
    work = list(_WORK)
    if rng.random() < 0.15:
        work.insert(2, Action.DISPATCH)  # handed on to another department
    if final is Status.REPORTED:
        actions: list[Action] = []
    elif final is Status.ACCEPTED:
        actions = [Action.ACCEPT]
    elif final is Status.DISPATCHED:
        actions = work[: work.index(Action.START)]
    elif final is Status.IN_PROGRESS:
        actions = work[: work.index(Action.START) + 1]
    elif final is Status.RESOLVED:
        actions = work
    elif final is Status.CLOSED:
        actions = [*work, Action.CLOSE]
        if rng.random() < 0.1:
            actions = [*work, Action.REOPEN, *_WORK, Action.CLOSE]
    elif final is Status.REJECTED:
        actions = [Action.REJECT] if rng.random() < 0.6 else [Action.ACCEPT, Action.REJECT]
    else:
        roll = rng.random()
        if roll < 0.3:
            actions = [Action.REJECT, Action.REOPEN]
        elif roll < 0.6:
            actions = [*work, Action.CLOSE, Action.REOPEN]
        else:
            actions = [*work, Action.REOPEN]
    status = Status.REPORTED
    for action in actions:
        status = next_status(status, action)  # raises if a plan ever strays from the table
    assert status is final
    return actions


def _between(rng: random.Random, bounds: tuple[int, int], skew: float = 1.0) -> int:
    low, high = bounds
    return low + int((high - low) * rng.random() ** skew)


class Storyteller:
    def __init__(self, world: World, census: Census, *, seed: int, anchor: datetime) -> None:
        self.world = world
        self.census = census
        self.anchor = anchor
        self.rng = random.Random(f"{seed}/events")
        self.grids = world.grids
        self.department_names = {code: name for code, name, _ in DEPARTMENTS}

    def stories(self, count: int) -> list[Story]:
        finals = list(Status)  # every status at least once, then by weight
        stories = [
            self.story(finals[i] if i < len(finals) else FINAL_STATUSES.pick(self.rng))
            for i in range(count)
        ]
        stories.sort(key=lambda story: story.reported_at)
        return stories

    def story(self, final: Status) -> Story:
        rng = self.rng
        grid = pick(rng, self.grids)
        category = CATEGORIES.pick(rng)
        severity = SEVERITIES.get(category, DEFAULT_SEVERITY).pick(rng)
        title, description = self._text(grid, category)
        location = grid.box.point(rng) if rng.random() < 0.85 else None
        story = Story(category, severity, title, description, grid, location, self._reporter(grid))
        actions = plan(rng, final)
        times = self._times(actions, final)
        report_actor = self._reporter_actor(story.reporter)
        story.steps.append(
            Step(Action.REPORT, None, Status.REPORTED, report_actor, "", None, times[0])
        )
        handlers = HANDLERS[category]
        department = handlers[0] if rng.random() < 0.8 else pick(rng, handlers)
        dispatched = False
        for action, at in zip(actions, times[1:], strict=True):
            note = pick(rng, NOTES[action]) if action in NOTES else ""
            department_id = None
            if action is Action.DISPATCH:
                if dispatched and story.steps[-1].action is Action.DISPATCH:
                    others = [code for code in self.world.departments if code != department]
                    department = pick(rng, others)
                    note = REDISPATCH_NOTE
                dispatched = True
                department_id = self.world.departments[department]
                note = note.format(department=self.department_names[department])
            elif action in (Action.ACCEPT, Action.CLOSE) and rng.random() < 0.3:
                note = ""  # notes are optional except on reject and reopen
            actor = self._actor(grid, action, department)
            status = next_status(story.status, action)
            story.steps.append(Step(action, story.status, status, actor, note, department_id, at))
        self._add_notes(story, department)
        chance, allowed = DEADLINES.get(severity, DEFAULT_DEADLINE)
        if rng.random() < chance:
            story.deadline = story.reported_at + timedelta(seconds=allowed)
        return story

    def _text(self, grid: Node, category: str) -> tuple[str, str]:
        compound = grid.compound.name if grid.compound else grid.name
        first, count = self.census.buildings.get(grid.id, (1, 10))
        place = f"{compound}{first + int(self.rng.random() * count)}号楼"
        title, description = pick(self.rng, TEXTS[category])
        values = {"compound": compound, "place": place, "road": grid.road}
        return title.format(**values), description.format(**values)

    def _reporter(self, grid: Node) -> tuple[str, int | str]:
        roll = self.rng.random()
        adults = self.census.adults_by_grid.get(grid.id)
        if roll < 0.25 and adults:
            return ("resident", pick(self.rng, adults))
        if roll < 0.55:
            return ("system", SYSTEMS.pick(self.rng))
        return ("member", pick(self.rng, self.world.responsible[grid.id]))

    @staticmethod
    def _reporter_actor(reporter: tuple[str, int | str]) -> str:
        return f"{reporter[0]}:{reporter[1]}"

    def _actor(self, grid: Node, action: Action, department: str) -> str:
        if action in (Action.START, Action.RESOLVE):
            return f"department:{department}"
        responsible = self.world.responsible[grid.id]
        member = responsible[0] if self.rng.random() < 0.8 else pick(self.rng, responsible)
        return f"member:{member}"

    def _times(self, actions: list[Action], final: Status) -> list[datetime]:
        """The report's time and each action's, increasing, the last one before the anchor."""
        rng = self.rng
        age = LAST_STEP_AGE.get(final, OPEN_AGE)
        at = self.anchor - timedelta(seconds=_between(rng, age, skew=2.0))
        times = [at]
        for action in reversed(actions):
            at -= timedelta(seconds=_between(rng, STEP_TIMES[action], skew=1.5))
            times.append(at)
        times.reverse()
        return times

    def _add_notes(self, story: Story, department: str) -> None:
        """Working notes between steps (or after the last one, while the event is open)."""
        rng = self.rng
        steps = story.steps
        ends = [step.at for step in steps[1:]] + [self.anchor]
        lines: list[Step] = []
        for step, end in zip(steps, ends, strict=True):
            lines.append(step)
            if step.to_status in (Status.CLOSED, Status.REJECTED) or rng.random() > 0.2:
                continue
            at = step.at + (end - step.at) * (0.2 + 0.6 * rng.random())
            actor = (
                f"department:{department}"
                if step.to_status is Status.IN_PROGRESS
                else self._actor(story.grid, Action.NOTE, department)
            )
            note = pick(rng, NOTES[Action.NOTE])
            lines.append(Step(Action.NOTE, step.to_status, step.to_status, actor, note, None, at))
        story.steps = lines


def code_for(story: Story, rng: random.Random, taken: set[str]) -> str:
    """The service's code format (EV + report day + 6 characters), drawn from the seed."""
    while True:
        tail = "".join(pick(rng, CODE_ALPHABET) for _ in range(6))
        code = f"EV{story.reported_at:%Y%m%d}{tail}"
        if code not in taken:
            taken.add(code)
            return code


def rows(
    stories: list[Story], *, seed: int, first_event_id: int = 1
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Event rows (dicts) and timeline rows (tuples in column order), ids in time order."""
    rng = random.Random(f"{seed}/event-codes")
    taken: set[str] = set()
    events: list[dict[str, Any]] = []
    transitions: list[tuple[Any, ...]] = []
    for event_id, story in enumerate(stories, start=first_event_id):
        replay = replay_timeline(story.steps)
        kind, who = story.reporter
        events.append(
            {
                "id": event_id,
                "code": code_for(story, rng, taken),
                "category": story.category,
                "title": story.title,
                "description": story.description,
                "lng": story.location[0] if story.location else None,
                "lat": story.location[1] if story.location else None,
                "grid_id": story.grid.id,
                "reporter_kind": kind,
                "reporter_member_id": who if kind == "member" else None,
                "reporter_resident_id": who if kind == "resident" else None,
                "reporter_system": who if kind == "system" else None,
                "severity": story.severity,
                "deadline": story.deadline,
                "reported_at": story.reported_at,
                **replay,
            }
        )
        for step in story.steps:
            transitions.append(
                (
                    len(transitions) + 1,
                    event_id,
                    step.action.value,
                    step.from_status.value if step.from_status else None,
                    step.to_status.value,
                    step.actor,
                    step.note,
                    step.department_id,
                    step.at,
                )
            )
    return events, transitions


def replay_timeline(steps: list[Step]) -> dict[str, Any]:
    """The event's derived fields after its timeline, as hub.events.service would leave them."""
    fields: dict[str, Any] = {
        "status": Status.REPORTED.value,
        "department_id": None,
        "accepted_at": None,
        "resolved_at": None,
        "closed_at": None,
        "updated_at": steps[0].at,
        "version": 1,
    }
    for step in steps[1:]:
        if step.action is Action.NOTE:
            continue
        fields["status"] = step.to_status.value
        fields["updated_at"] = step.at
        fields["version"] += 1
        if step.action is Action.DISPATCH:
            fields["department_id"] = step.department_id
        elif step.action is Action.ACCEPT and fields["accepted_at"] is None:
            fields["accepted_at"] = step.at
        elif step.action is Action.RESOLVE:
            fields["resolved_at"] = step.at
        elif step.action is Action.CLOSE:
            fields["closed_at"] = step.at
        elif step.action is Action.REOPEN:
            fields["resolved_at"] = None
            fields["closed_at"] = None
    return fields
