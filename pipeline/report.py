"""`report.html`: one self-contained page that shows what a run made and what it cost.

Tables come from `pipeline.report_data`; each figure is drawn with matplotlib (headless Agg) and
embedded as a base64 PNG, so the file can be mailed or opened offline. Korean labels need a font
with Hangul: the first installed one of `HANGUL_FONTS` is used (Debian's fonts-nanum provides
NanumGothic); without one the page says so, and so does one `SynthWarning`, instead of matplotlib's
warning per missing glyph.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import warnings
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape

from pipeline.breadth import KEYWORD_SIDE_LIMIT, STYLE_ATTRIBUTES
from pipeline.errors import SynthWarning
from pipeline.prices import format_cost
from pipeline.report_data import FUNNEL, ReportData, collect
from pipeline.store import write_atomic

REPORT_FILE = "report.html"
#: fonts with Hangul, in order of preference
HANGUL_FONTS = ("NanumGothic", "NanumBarunGothic", "Noto Sans CJK KR", "Noto Sans KR", "UnDotum")
_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


#: where Debian puts fonts with Hangul (read when matplotlib's font cache predates them)
FONT_FILES = ("/usr/share/fonts/truetype/nanum/NanumGothic.ttf",)


def hangul_font() -> str | None:
    """The first installed font of `HANGUL_FONTS`, or None."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    if not installed & set(HANGUL_FONTS):
        for path in FONT_FILES:
            if Path(path).exists():
                font_manager.fontManager.addfont(path)
        installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in HANGUL_FONTS if name in installed), None)


def figure_style() -> dict[str, Any]:
    """matplotlib settings that draw Korean labels (`matplotlib.rc_context` or `rcParams`)."""
    font = hangul_font()
    return {"font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"]}


def write_report(run: Path, embed_vectors: bool = True) -> Path:
    """Collect, draw and write `<run>/report.html` (atomically); returns its path."""
    data = collect(run, embed_vectors)
    html = render_report(data)
    path = run / REPORT_FILE
    write_atomic(path, html.encode("utf-8"))
    return path


def render_report(data: ReportData) -> str:
    import matplotlib

    matplotlib.use("Agg")
    font = hangul_font()
    with matplotlib.rc_context(figure_style()), warnings.catch_warnings():
        if font is None:
            # said once below; matplotlib would warn once per Hangul syllable in every figure
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from")
        figures = _figures(data)
    if font is None:
        warnings.warn(
            SynthWarning(
                "no font with Hangul is installed, so the report's figures draw Korean labels as "
                f"boxes: install one (apt-get install fonts-nanum), then `synth report {data.run}`"
            ),
            stacklevel=2,
        )
    environment = Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    template = environment.get_template("report.html.j2")
    manifest = data.manifest
    config = manifest.get("config", {})
    generator = config.get("generator", {})
    return template.render(
        run=str(data.run),
        status=manifest.get("status", "?"),
        n=config.get("n"),
        seed=config.get("seed"),
        generator=f"{generator.get('backend', '?')}:{generator.get('model') or 'default'}",
        written=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        font=font,
        figures=figures,
        funnel=_rows(data.funnel),
        funnel_columns=["category", "label", "quota", *(n for _, n in FUNNEL), "selected"],
        rejections=_rows(data.rejections),
        diversity=_rows(data.diversity),
        style=_rows(_style_table(data.style)),
        style_columns=list(_style_table(data.style).columns),
        refusals=_rows(data.refusals),
        spend=[{**row, "cost": format_cost(row["cost_usd"])} for row in _rows(data.spend)],
        total_cost=format_cost(float(data.spend["cost_usd"].sum() or 0.0)),
        corpus_items=data.corpus.height,
        splits=_rows(data.corpus.group_by("split").len().sort("split"))
        if data.corpus.height
        else [],
        duplicates=data.duplicates.height,
        clusters=data.cluster_sizes.height,
        attribute_table=_rows(_attribute_table(data)),
        attribute_names=list(STYLE_ATTRIBUTES),
        keywords=_rows(data.keywords.filter((pl.col("safe") + pl.col("unsafe")) > 0)),
        keyword_limit=KEYWORD_SIDE_LIMIT,
        removed=_rows(data.removed),
    )


def _attribute_table(data: ReportData) -> pl.DataFrame:
    """Per category: topics, topics holding >= 3% of its rows, and each attribute's values with
    their counts, largest first."""
    if data.attributes.is_empty():
        return pl.DataFrame()
    found = []
    for category in data.attributes["category"].unique(maintain_order=True).sort():
        topics = data.topics.filter(pl.col("category") == category)
        row: dict[str, Any] = {
            "category": category,
            "topics": topics.height,
            "wide_topics": topics.filter(pl.col("share") >= 0.03).height,
        }
        for attribute in STYLE_ATTRIBUTES:
            values = data.attributes.filter(
                (pl.col("category") == category) & (pl.col("attribute") == attribute)
            )
            pairs = values.select("value", "count").iter_rows()
            row[attribute] = ", ".join(f"{value} {count}" for value, count in pairs)
        found.append(row)
    return pl.DataFrame(found)


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return list(frame.iter_rows(named=True))


def _style_table(style: pl.DataFrame) -> pl.DataFrame:
    """Per category, the share of each sentence type and speech level."""
    if style.is_empty():
        return pl.DataFrame({"category": []}, schema={"category": pl.String})
    totals = style.group_by("category").agg(pl.col("items").sum().alias("total"))
    shares = []
    for column in ("sentence_type", "speech_level"):
        share = (
            style.group_by("category", column)
            .agg(pl.col("items").sum())
            .join(totals, on="category")
            .with_columns((pl.col("items") / pl.col("total")).round(2).alias("share"))
            .pivot(on=column, index="category", values="share")
        )
        shares.append(share)
    return shares[0].join(shares[1], on="category").fill_null(0.0).sort("category")


# -- figures -------------------------------------------------------------------------------------


def _png(figure: Any) -> str:
    """A figure as a data URI, then closed (the report may draw dozens)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def draw_funnel(data: ReportData) -> Any:
    """The funnel figure, or None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    funnel = data.funnel
    if not (funnel.height):
        return None
    figure, axis = plt.subplots(figsize=(10, 0.45 * funnel.height + 1.6))
    steps = [name for _, name in FUNNEL] + ["selected"]
    height = 0.8 / len(steps)
    for index, step in enumerate(steps):
        positions = [row + index * height for row in range(funnel.height)]
        axis.barh(positions, funnel[step], height=height, label=step, color=_COLORS[index])
    axis.set_yticks([row + 0.4 - height / 2 for row in range(funnel.height)])
    axis.set_yticklabels(funnel["category"])
    axis.invert_yaxis()
    axis.set_xlabel("queries")
    axis.set_title("yield per category: generated > screened > deduped > judged > selected")
    axis.legend(loc="lower right", fontsize=8)
    return figure


def draw_rejections(data: ReportData) -> Any:
    """The rejections figure, or None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if not (data.rejections.height):
        return None
    rejections = data.rejections.sort("rows")
    figure, axis = plt.subplots(figsize=(9, 0.35 * rejections.height + 1.4))
    labels = [f"{s}: {r}" for s, r in rejections.select("stage", "reason").iter_rows()]
    axis.barh(labels, rejections["rows"], color=_COLORS[3])
    axis.set_xlabel("rows rejected")
    axis.set_title("rejections by stage and reason")
    return figure


def draw_dedup(data: ReportData) -> Any:
    """The dedup figure, or None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if not (data.cluster_sizes.height or data.duplicates.height):
        return None
    figure, (sizes, scores) = plt.subplots(1, 2, figsize=(10, 3.4))
    if data.cluster_sizes.height:
        largest = int(data.cluster_sizes["size"].max() or 1)
        sizes.hist(data.cluster_sizes["size"], bins=range(1, largest + 2), color=_COLORS[0])
        sizes.set_yscale("log")
    sizes.set_xlabel("cluster size (items)")
    sizes.set_ylabel("clusters")
    sizes.set_title("dedup cluster sizes")
    lowest = float(data.duplicates["dup_score"].min() or 0.0)
    bins = [lowest + (1.0 - lowest) * step / 30 for step in range(31)] if lowest < 1 else 10
    by_reason = data.duplicates.group_by("dup_reason", maintain_order=True)
    for index, ((reason,), group) in enumerate(by_reason):
        values = group["dup_score"].drop_nulls()
        if values.len():
            scores.hist(values, bins=bins, alpha=0.6, label=str(reason), color=_COLORS[index])
    scores.set_xlabel("similarity to the kept item")
    scores.set_title("duplicates: similarity by kind")
    if data.duplicates.height:
        scores.legend(fontsize=8)
    return figure


def draw_lengths(data: ReportData) -> Any:
    """The lengths figure, or None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if not (data.corpus.height):
        return None
    figure, axis = plt.subplots(figsize=(9, 3.2))
    for index, ((label,), group) in enumerate(data.corpus.group_by("label", maintain_order=True)):
        lengths = group["text"].str.len_chars()
        axis.hist(lengths, bins=30, alpha=0.6, label=str(label), color=_COLORS[index])
    axis.set_xlabel("characters per query")
    axis.set_ylabel("queries")
    axis.set_title("query length by label (selected corpus)")
    axis.legend(fontsize=8)
    return figure


def draw_diversity(data: ReportData) -> Any:
    """The diversity figure, or None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if not (data.diversity.height):
        return None
    diversity = data.diversity
    figure, axis = plt.subplots(figsize=(10, 3.6))
    positions = range(diversity.height)
    axis.bar([p - 0.27 for p in positions], diversity["distinct_1"], 0.27, label="distinct-1")
    axis.bar(positions, diversity["distinct_2"], 0.27, label="distinct-2")
    distances = diversity["mean_distance"].fill_null(0.0)
    axis.bar([p + 0.27 for p in positions], distances, 0.27, label="mean embedding distance")
    axis.set_xticks(list(positions))
    axis.set_xticklabels(diversity["category"], rotation=30, ha="right", fontsize=8)
    axis.set_title("diversity per category (Kiwi morphemes; e5 cosine distance)")
    axis.legend(fontsize=8)
    return figure


def draw_style(data: ReportData) -> Any:
    """The style figure, or None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    style = _style_table(data.style)
    if not style.height:
        return None
    figure, axis = plt.subplots(figsize=(10, 3.6))
    bottom = [0.0] * style.height
    for index, column in enumerate(c for c in style.columns if c != "category"):
        axis.bar(
            style["category"],
            style[column],
            bottom=bottom,
            label=column,
            color=_COLORS[index % len(_COLORS)],
        )
        bottom = [b + v for b, v in zip(bottom, style[column], strict=True)]
    axis.set_ylabel("share (types, then levels)")
    axis.set_title("sentence type (question/request/statement) and speech level (반말/존댓말)")
    axis.tick_params(axis="x", rotation=30, labelsize=8)
    axis.legend(fontsize=7, ncol=5)
    return figure


def draw_refusals(data: ReportData) -> Any:
    """The refusals figure, or None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if not (data.refusals.height):
        return None
    refusals = data.refusals
    figure, axis = plt.subplots(figsize=(9, 0.35 * refusals.height + 1.4))
    shares = [
        r / c if c else 0.0 for r, c in zip(refusals["refused"], refusals["calls"], strict=True)
    ]
    axis.barh(refusals["category"], shares, color=_COLORS[3])
    axis.set_xlim(0, 1)
    axis.set_xlabel("share of generation calls refused")
    axis.set_title("refusals per category")
    return figure


def draw_spend(data: ReportData) -> Any:
    """The spend figure, or None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if not (
        data.spend.height
        and (data.spend["input_tokens"].sum() or data.spend["output_tokens"].sum())
    ):
        return None
    figure, axis = plt.subplots(figsize=(8, 3))
    axis.bar(data.spend["stage"], data.spend["input_tokens"], label="input tokens")
    axis.bar(
        data.spend["stage"],
        data.spend["output_tokens"],
        bottom=data.spend["input_tokens"],
        label="output tokens",
    )
    axis.set_title("tokens per stage")
    axis.legend(fontsize=8)
    return figure


#: every figure of the report, in page order (the notebook draws the same ones)
FIGURES = {
    "funnel": draw_funnel,
    "rejections": draw_rejections,
    "dedup": draw_dedup,
    "lengths": draw_lengths,
    "diversity": draw_diversity,
    "style": draw_style,
    "refusals": draw_refusals,
    "spend": draw_spend,
}


def _figures(data: ReportData) -> dict[str, str]:
    figures = {}
    for name, draw in FIGURES.items():
        figure = draw(data)
        if figure is not None:
            figures[name] = _png(figure)
    return figures
