"""Notices (drafts, published and retracted, Markdown, scoped to grids) and resident feedback."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from hub.demo.names import pick
from hub.demo.people import Census
from hub.demo.world import World

DAY = 86400
TRACKING_ALPHABET = (
    "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # the service's: read aloud, typed from paper
)

# (department, scope, title, Markdown body). Scope: district, street, community or grids.
NOTICES: list[tuple[str, str, str, str]] = [
    (
        "community_service",
        "district",
        "关于开展{year}年度城乡居民医保参保缴费工作的通知",
        "## 缴费时间\n\n即日起至12月31日。\n\n## 缴费方式\n\n- 微信或支付宝搜索“医保缴费”\n"
        "- 社区服务站窗口（工作日 9:00-17:00）\n\n## 温馨提示\n\n"
        "新生儿、退役军人等**特殊人群**请携带相关证明到社区办理。",
    ),
    (
        "public_security",
        "district",
        "防范电信网络诈骗提示",
        "近期冒充**客服退款**、**公检法**的诈骗案件多发。\n\n1. 不点击陌生链接\n"
        "2. 不向陌生账户转账\n3. 接到可疑电话请拨打 **96110** 咨询\n\n"
        "> 公检法机关不会通过电话要求转账。",
    ),
    (
        "health",
        "street",
        "65岁以上老年人免费健康体检通知",
        "社区卫生服务中心为辖区**65岁以上**常住老年人提供免费体检。\n\n"
        "## 项目\n\n- 血常规、尿常规\n- 肝功能、肾功能、血糖、血脂\n- 心电图、腹部B超\n\n"
        "请空腹前往，携带身份证和医保卡。",
    ),
    (
        "environment",
        "community",
        "垃圾分类宣传周活动安排",
        "本周六上午在社区广场开展垃圾分类宣传活动。\n\n"
        "| 时间 | 内容 |\n|---|---|\n| 9:00 | 分类知识讲解 |\n| 10:00 | 有奖问答 |\n"
        "| 10:30 | 旧物兑换 |\n\n欢迎居民朋友参加。",
    ),
    (
        "urban_management",
        "grids",
        "小区道路维修期间临时交通管制的通知",
        "因路面维修，下周一至周五**8:00-18:00**小区主路临时封闭。\n\n"
        "- 机动车请绕行东门\n- 行人请走人行便道\n\n给您带来不便，敬请谅解。",
    ),
    (
        "community_service",
        "grids",
        "停水通知",
        "因供水管线检修，本周四**9:00-15:00**停水，请提前储水。\n\n如有疑问请联系网格员。",
    ),
    (
        "public_security",
        "community",
        "冬季消防安全提示",
        "## 注意事项\n\n- 电动自行车**严禁**进楼入户充电\n- 楼道内不得堆放杂物\n"
        "- 使用取暖器时人走断电\n\n发现火情请立即拨打 **119**。",
    ),
    (
        "civil_affairs",
        "street",
        "老年助餐服务点开放公告",
        "街道老年餐桌已开放，**60岁以上**老年人凭身份证可享受助餐补贴。\n\n"
        "- 午餐：11:00-12:30\n- 晚餐：17:00-18:00\n\n行动不便的老人可申请送餐上门。",
    ),
    (
        "health",
        "district",
        "秋冬季流感疫苗接种通知",
        "各社区卫生服务中心已开始流感疫苗接种。\n\n**重点人群**：60岁以上老人、慢性病患者、"
        "儿童。\n\n请通过预约平台提前预约。",
    ),
    (
        "community_service",
        "community",
        "党员志愿者招募：楼门长与助老服务",
        "社区党委招募党员志愿者担任**楼门长**，协助网格员开展走访和助老服务。\n\n"
        "报名请到社区党群服务中心登记。",
    ),
    (
        "urban_management",
        "street",
        "关于清理楼道堆物的通告",
        "为消除消防隐患，街道将于本月集中清理楼道堆物。\n\n请居民在**本周日前**自行清理，"
        "逾期将统一清运。",
    ),
    (
        "civil_affairs",
        "community",
        "困难群众临时救助政策解读",
        "## 救助对象\n\n因意外事件、突发疾病等导致基本生活暂时困难的家庭。\n\n## 申请方式\n\n"
        "向户籍或居住地社区提出申请，社区协助办理。",
    ),
    (
        "environment",
        "district",
        "重污染天气橙色预警期间应急措施",
        "预警期间：\n\n- 建筑工地停止土石方作业\n- 减少户外活动，老人儿童注意防护\n\n"
        "请关注后续通知。",
    ),
    (
        "public_security",
        "grids",
        "小区门禁系统升级通知",
        "小区门禁将升级为人脸识别，请居民于本月底前到物业登记。\n\n*登记信息仅用于门禁。*",
    ),
]
NOTICE_STATUSES = ("draft", "published", "retracted")


def notice_rows(
    world: World, *, seed: int, anchor: datetime
) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Notice rows and their grid scopes; every status appears, most notices are published."""
    rng = random.Random(f"{seed}/notices")
    streets = [node for node in world.nodes if node.level == "street"]
    communities = [node for node in world.nodes if node.level == "community"]
    notices: list[dict[str, Any]] = []
    scopes: list[tuple[int, int]] = []
    timed = []
    for n, (department, scope, title, body) in enumerate(NOTICES):
        status = (
            NOTICE_STATUSES[n]
            if n < 3
            else ("published", "published", "draft", "retracted")[int(rng.random() * 4)]
        )
        created = anchor - timedelta(seconds=int((1 + 59 * rng.random() ** 1.5) * DAY))
        published = retracted = None
        if status != "draft":
            published = created + (anchor - created) * (0.1 + 0.3 * rng.random())
        if status == "retracted" and published is not None:
            retracted = published + (anchor - published) * (0.2 + 0.6 * rng.random())
        if scope == "district":
            grid_ids = [world.nodes[0].id]
        elif scope == "street":
            grid_ids = [pick(rng, streets).id]
        elif scope == "community":
            grid_ids = [pick(rng, communities).id]
        else:
            community = pick(rng, communities)
            grids = [node.id for node in world.nodes if node.parent is community]
            grid_ids = sorted(rng.sample(grids, min(len(grids), 2 + int(rng.random() * 2))))
        row = {
            "title": title.format(year=anchor.year),
            "body": body,
            "status": status,
            "department_id": world.departments[department],
            "created_at": created,
            "published_at": published,
            "retracted_at": retracted,
        }
        timed.append((created, row, grid_ids))
    timed.sort(key=lambda item: item[0])  # ids follow creation, as they would in real use
    for notice_id, (_, row, grid_ids) in enumerate(timed, start=1):
        notices.append({"id": notice_id, **row})
        scopes.extend((notice_id, grid_id) for grid_id in grid_ids)
    return notices, scopes


SUGGESTIONS = (
    "建议在小区增设电动自行车集中充电桩。",
    "希望社区多组织老年人智能手机使用培训。",
    "建议在儿童游乐区增加遮阳设施。",
    "建议延长社区图书室周末开放时间。",
    "希望增加社区食堂的菜品种类。",
    "建议在小区主路增设减速带。",
    "希望能开设青少年暑期托管班。",
)
COMPLAINTS = (
    "小区物业对报修长期不处理。",
    "楼下商户夜间经营噪音大。",
    "小区垃圾清运不及时，夏天气味大。",
    "共享单车堆放在小区门口，影响通行。",
    "小区停车管理混乱，外来车辆随意停放。",
    "楼道照明灯坏了很久没有人修。",
)
RESPONSES = (
    ("community_service", "感谢您的建议，社区已纳入下季度工作计划。"),
    ("community_service", "已转交物业公司限期整改，网格员将跟进落实情况。"),
    ("urban_management", "已安排执法人员现场检查，将依法处理。"),
    ("environment", "已协调环卫部门增加清运频次。"),
    ("civil_affairs", "感谢反馈，相关服务将在街道层面统筹安排。"),
    ("public_security", "已通知辖区派出所加强巡查。"),
)


def feedback_count(residents: int) -> int:
    return min(1000, 30 + residents // 1000)


def feedback_rows(
    world: World, census: Census, *, seed: int, anchor: datetime, count: int
) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}/feedback")
    grids = world.grids
    taken: set[str] = set()
    items = []
    for n in range(count):
        kind = "complaint" if rng.random() < 0.45 else "suggestion"
        grid = pick(rng, grids) if rng.random() < 0.9 else None
        adults = census.adults_by_grid.get(grid.id, []) if grid else []
        resident_id = pick(rng, adults) if adults and rng.random() < 0.5 else None
        created = anchor - timedelta(seconds=int(90 * DAY * rng.random() ** 1.3) + 600)
        item: dict[str, Any] = {
            "tracking_code": _tracking_code(rng, taken),
            "kind": kind,
            "content": pick(rng, COMPLAINTS if kind == "complaint" else SUGGESTIONS),
            "grid_id": grid.id if grid else None,
            "resident_id": resident_id,
            "status": "submitted",
            "response": None,
            "responder_department_id": None,
            "created_at": created,
            "responded_at": None,
        }
        answered = rng.random() < 0.55 if n >= 2 else n == 1  # both statuses, whatever the count
        if answered:
            department, response = pick(rng, RESPONSES)
            item.update(
                status="responded",
                response=response,
                responder_department_id=world.departments[department],
                responded_at=created + (anchor - created) * (0.1 + 0.8 * rng.random()),
            )
        items.append(item)
    items.sort(key=lambda item: item["created_at"])
    return [{"id": n, **item} for n, item in enumerate(items, start=1)]


def _tracking_code(rng: random.Random, taken: set[str]) -> str:
    """The service's format: FB and ten characters."""
    while True:
        code = "FB" + "".join(pick(rng, TRACKING_ALPHABET) for _ in range(10))
        if code not in taken:
            taken.add(code)
            return code
