"""Chinese names, mobile numbers and ID-number region codes for the demo data.

Weighted choices are expanded into flat tables once, so a draw is one `random()` and one index:
the resident generator makes tens of draws per person and has to stay fast at a million people.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Weighted(Generic[T]):
    """A weighted choice with integer weights, drawn by index into an expanded table."""

    __slots__ = ("_table",)

    def __init__(self, items: Sequence[tuple[T, int]]) -> None:
        self._table: list[T] = [item for item, weight in items for _ in range(weight)]

    def pick(self, rng: random.Random) -> T:
        return self._table[int(rng.random() * len(self._table))]


def pick(rng: random.Random, items: Sequence[T]) -> T:
    return items[int(rng.random() * len(items))]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Common surnames, weighted roughly by their share of the population (per mille).
SURNAMES: Weighted[str] = Weighted(
    [
        *zip("王李张刘陈", (71, 70, 67, 54, 45), strict=True),
        *zip("杨黄赵吴周", (31, 22, 20, 19, 19), strict=True),
        *zip("徐孙马朱胡郭何林高罗郑", (14, 14, 13, 12, 12, 11, 11, 10, 10, 9, 9), strict=True),
        *zip("梁谢宋唐许韩冯邓曹彭曾肖", (8, 7, 6, 6, 6, 6, 5, 5, 5, 5, 5, 5), strict=True),
        *((s, 4) for s in "田董袁潘于蒋蔡余杜叶程"),
        *((s, 3) for s in "苏魏吕丁任沈姚卢姜崔钟谭陆汪范"),
        *((s, 2) for s in "金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"),
        *((s, 1) for s in "万钱严武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷"),
        ("欧阳", 1),
        ("上官", 1),
    ]
)

# Given names follow fashions: a grandmother is 秀英, her granddaughter 梓涵. Keyed by the era
# of birth, so names match the ages the ID numbers carry.
_GIVEN: dict[tuple[str, str], tuple[str, ...]] = {
    ("male", "old"): _words(
        "建国 建军 国庆 国强 志强 德明 振华 学文 福生 宝山 长春 永福 树林 玉田 文华 金生 "
        "守仁 德胜 广才 俊 忠 福 贵 有才 洪 荣 振国 树森 兆林 庆祥"
    ),
    ("male", "mid"): _words(
        "伟 强 磊 军 勇 杰 涛 斌 超 明 刚 平 辉 鹏 华 飞 波 海涛 建华 志刚 晓东 立新 "
        "卫东 建平 俊峰 永强 海军 红军 春生 志勇 文斌 国华"
    ),
    ("male", "young"): _words(
        "浩 宇 博 昊 帅 鑫 浩然 子轩 宇航 俊豪 明轩 天宇 家豪 志远 思远 博文 一鸣 嘉诚 "
        "晨阳 泽宇 逸飞 文博 皓轩 子豪 俊杰 鹏飞"
    ),
    ("male", "child"): _words(
        "子墨 梓豪 沐宸 一诺 浩宇 宇泽 奕辰 俊熙 承泽 梓睿 睿泽 铭轩 子睿 煜祺 浩轩 "
        "宇轩 梓轩 沐阳 锦程 瑞霖"
    ),
    ("female", "old"): _words(
        "秀英 桂英 秀兰 玉兰 桂兰 淑珍 凤英 玉梅 秀珍 淑华 桂芳 玉珍 凤兰 素芳 翠花 "
        "兰英 秀芳 淑兰 玉芬 桂珍 金凤 淑英 秀云 春兰"
    ),
    ("female", "mid"): _words(
        "丽 敏 静 燕 艳 娟 霞 芳 红梅 丽华 海燕 晓红 雪梅 春梅 丽娟 秀梅 红霞 莉 玲 "
        "丽萍 晓燕 慧 婷 红 颖 玉霞 美玲 彩霞"
    ),
    ("female", "young"): _words(
        "婷 雪 倩 颖 琳 晶 欣 佳 婷婷 雨欣 思雨 佳怡 欣怡 梦瑶 雅婷 诗涵 晓雯 文静 "
        "梦琪 雨婷 佳琪 悦 璐 丹丹 晨曦"
    ),
    ("female", "child"): _words(
        "一诺 梓涵 欣怡 子涵 诗涵 梓萱 可馨 若汐 语桐 雨桐 芷若 沐瑶 依诺 梓琪 "
        "佳琪 一涵 思涵 安然 语嫣"
    ),
}


def era(birth_year: int) -> str:
    if birth_year < 1960:
        return "old"
    if birth_year < 1985:
        return "mid"
    if birth_year < 2005:
        return "young"
    return "child"


def given_name(rng: random.Random, gender: str, birth_year: int) -> str:
    return pick(rng, _GIVEN[gender, era(birth_year)])


def full_name(rng: random.Random, gender: str, birth_year: int, surname: str | None = None) -> str:
    return (surname or SURNAMES.pick(rng)) + given_name(rng, gender, birth_year)


# Mainland mobile prefixes of the three carriers (all match hub.validation's phone pattern).
MOBILE_PREFIXES = _words(
    "130 131 132 133 135 136 137 138 139 150 151 152 153 155 156 157 158 159 "
    "166 176 177 178 180 181 182 183 185 186 187 188 189 191 198 199"
)


def mobile(rng: random.Random) -> str:
    return pick(rng, MOBILE_PREFIXES) + f"{int(rng.random() * 100_000_000):08d}"


# Where residents' ID numbers were issued: mostly Beijing districts, and the provinces most
# migrants to Beijing come from. (GB/T 2260 codes; a few have since been renumbered, as real
# older ID numbers have too.)
LOCAL_REGION = "110105"
_REGION_WEIGHTS = [
    (LOCAL_REGION, 40),
    ("110101", 5),
    ("110102", 5),
    ("110106", 6),
    ("110108", 7),
    ("120101", 3),
    ("130102", 5),
    ("130602", 4),
    ("140105", 3),
    ("220102", 2),
    ("230103", 3),
    ("340104", 3),
    ("370102", 4),
    ("410105", 5),
    ("420106", 3),
    ("510104", 2),
]
REGIONS: Weighted[str] = Weighted(_REGION_WEIGHTS)
REGION_CODES: tuple[str, ...] = tuple(sorted(code for code, _ in _REGION_WEIGHTS))
