"""Built-in parity texts: varied Chinese review-like sentences.

Short and long, punctuation-heavy, traditional characters, English and emoji mixed in,
numbers, whitespace oddities, and a few texts long enough to be cut at any usual
``max_length``. Conversion checks every model on all of them (plus user texts).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import QingganError

REVIEWS = (
    "好",
    "差",
    "一般",
    "还行吧",
    "非常满意！",
    "太失望了。",
    "这家酒店服务很好，下次还来。",
    "房间太小了，隔音也差，不会再住。",
    "前台态度冷淡，等了半个小时才办好入住。",
    "早餐种类丰富，味道也不错，性价比很高。",
    "位置很方便，出门就是地铁站。",
    "床单有污渍，卫生间有异味，糟糕透了。",
    "物流很快，第二天就到了，包装也很结实。",
    "买回来两天就坏了，客服还推来推去，垃圾！",
    "质量一般，和图片上差别有点大。",
    "手机屏幕很清晰，电池也耐用，推荐购买。",
    "电脑开机要三分钟，风扇噪音大得吓人。",
    "外卖送到的时候已经凉了，菜也洒了一半。",
    "味道正宗，分量足，老板还送了饮料，好评！",
    "等了一个半小时才送到，饭都凉了，差评。",
    "这本书写得很感人，看哭了好几次。",
    "翻译太生硬了，读起来很费劲。",
    "电影节奏拖沓，看到一半就睡着了。",
    "演员演技在线，剧情反转也很精彩。",
    "客服小姐姐耐心地帮我解决了问题，赞一个！",
    "说好的七天无理由退货，结果就是不给退。",
    "价格便宜，东西也不差，值得。",
    "不是很好，也不是很差，中规中矩吧。",
    "本来期待很高，结果有点失望。",
    "虽然贵了点，但是质量确实好。",
    "虽然便宜，但是用了一次就坏了。",
    "环境干净整洁，服务员也很热情。",
    "菜太咸了，根本没法吃。",
    "宝贝收到了，和描述的一样，很喜欢～",
    "第三次购买了，一如既往的好。",
    "包装破损，里面的东西都摔碎了！！！",
    "还可以吧……就是有点贵。",
    "嗯。",
    "？？？这是什么鬼东西",
    "！！！太棒了！！！",
    "性价比超高，强烈推荐给大家。",
    "键盘手感不错，就是灯光有点刺眼。",
    "系统经常卡死，售后也不管。",
    "房间干净，床很舒服，睡得很香。",
    "隔壁装修吵了一整天，前台也不给换房。",
    "快递员态度很好，还帮忙搬上楼。",
    "商品与描述严重不符，要求退款。",
    "口感细腻，甜而不腻，孩子很爱吃。",
    "鱼不新鲜，吃完肚子疼了一晚上。",
    "这个价位能买到这样的东西，已经很满足了。",
    "不推荐，浪费钱。",
    "不得不说，这次体验真的很棒。",
    "没有想象中那么好，但也不算差。",
    "下次不会再来了。",
    "以后就认准这家店了！",
    "服務態度很好，房間也很乾淨。",
    "東西質量太差了，完全不值這個價錢。",
    "酒店設施有點舊，但是位置很好。",
    "The hotel is great, 服务一流！",
    "quality太差了，totally a waste of money.",
    "OK啦，还算 acceptable。",
    "非常好用👍👍👍",
    "气死我了😡😡 再也不买了",
    "哈哈哈哈笑死我了😂，这么好用的东西才卖这么点钱",
    "收到货很开心😊，包装也很精致🎁",
    "差评👎，客服不回消息",
    "iPhone 15 Pro 的屏幕真的很好看，A17 芯片也很快。",
    "用了3个月，电池从100%掉到85%，一般般。",
    "299元买的，感觉值399元，赚了。",
    "等了 2 小时 30 分钟，还没上菜！！",
    "５星好评，物超所值。",
    "ＡＢＣ品牌的东西就是靠谱。",
    "   前后都有空格的评论   ",
    "换行\n之后\t还有制表符",
    "【好评】宝贝很好，【推荐】大家购买！",
    "《三体》真是一部伟大的科幻小说。",
    "“说好的包邮呢？”客服说：“偏远地区不包邮。”",
    "（括号里的内容）其实也还行；不过——就这样吧。",
    "1. 物流快；2. 质量好；3. 价格公道。",
    "#好物分享# 这款面膜用了皮肤变好了 @闺蜜 快来买",
    "http://example.com 这个链接里的东西别买，骗人的",
    "A+++++ 卖家，五星！",
    "呵呵，真是“好”服务啊。",
    "一点都不好吃，再也不来了",
    "好吃到哭！！！",
    "真心不错，下次还会光顾的～",
    "垃圾产品，垃圾服务，垃圾商家！",
    "整体来说还是满意的，就是物流慢了点。",
    "酒店的早餐很丰盛，但是房间的隔音效果很差，晚上被吵醒好几次，前台的服务态度倒是挺好的。",
    "这款手机外观漂亮，拍照效果出色，但是发热严重，玩游戏半小时就烫手，续航也一般，总体来说中规中矩。",
)


def long_texts() -> tuple[str, ...]:
    """Texts long enough to be truncated at 128, 256 and 512 tokens."""
    hotel = "这家酒店位置很好，离地铁站很近，房间宽敞明亮，床也很舒服，服务员态度热情。"
    shop = "买了这件衣服，质量很差，洗了一次就掉色，客服也不理人，退货又麻烦，真的很失望。"
    mixed = "Great product 👍 质量很好，price 也合理，物流 fast，推荐 recommend！"
    return (hotel * 4, shop * 4, hotel * 8, shop * 9, mixed * 12, (hotel + shop) * 9)


BUILTIN_TEXTS: tuple[str, ...] = REVIEWS + long_texts()


def read_text_file(path: str | Path) -> list[str]:
    """Non-blank lines of a UTF-8 file (one text per line)."""
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QingganError(f"cannot read parity texts from {file}: {exc}") from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise QingganError(f"{file} has no texts (one per line expected)")
    return texts
