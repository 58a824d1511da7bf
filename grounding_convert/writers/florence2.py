"""Florence-2: ``<loc_N>`` tokens, floor into 1000 bins (0..999), task tokens as prefixes.

FORMATS_NEXT §5.  Formula [code] huggingface/transformers ``06053b84``
``models/florence2/processing_florence2.py`` ``Florence2PostProcessor.quantize`` (``quantize_bins =
(1000, 1000)``; the original remote code's ``BoxQuantizer(mode='floor')`` is the same)::

    q_xmin = (xmin / (size_w / bins_w)).floor().clamp(0, bins_w - 1)   # float32 tensors
    dq_xmin = (xmin + 0.5) * (size_w / bins_w)                         # decode: bin centre

hence ``Quantizer(1000, floor, max_index=999, arithmetic="per-bin-f32")``; the vocabulary has
``<loc_0>``…``<loc_999>`` only (maestro and ms-swift round and can emit ``<loc_1000>``: not done here).
Tasks (prefix → suffix): detection ``<OD>`` → ``label<loc>×4…`` per region (its category, else its
phrase); REC ``<OPEN_VOCABULARY_DETECTION>expr`` → ``expr<loc>×4``; grounded caption
``<CAPTION_TO_PHRASE_GROUNDING>caption`` → each phrase and its locs; REG ``<REGION_TO_DESCRIPTION><loc>×4`` →
text.  Records ``{"image", "prefix", "suffix"}`` as Roboflow's Florence-2 JSONL
(https://roboflow.com/formats/florence-2).  The prefixes are ``configs/templates/florence-2.yaml`` (one
phrasing per task: the task token is the model's fixed prompt).  Fully declarative (:data:`FLORENCE_2`).
"""

from __future__ import annotations

from .. import boxes as B
from .convention import Columns, Convention, Listing, Spelling, Tagging
from .decoding import ConventionParse

QUANTIZER = B.Quantizer(scale=1000, rounding="floor", max_index=999, arithmetic="per-bin-f32")
REC, CAPTION, REG = "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>", "<REGION_TO_DESCRIPTION>"

FLORENCE_2 = Convention(
    grid=QUANTIZER,
    spelling=Spelling(box=("<loc_", 0, "><loc_", 1, "><loc_", 2, "><loc_", 3, ">")),
    tagging=Tagging(),
    layout=Columns((("prefix", ("prompt",)), ("suffix", ("answer",)))),
    placeholders=(("rec", "phrase"), ("reg", "boxes"), ("grounded-caption", "caption")),
    # grounded caption: each grounded phrase followed by its locs, nothing between (phrase grounding output)
    # <OD> → "label<loc>×4…" per region (its category, else its phrase)
    answers=(
        ("rec", "{phrase}{boxes}"),
        ("reg", "{phrase}"),
        ("grounded-caption", "{objects}"),
        ("detection", "{objects}"),
    ),
    listing=Listing(item="{label}{boxes}"),
    reserved=("<loc_", REC, CAPTION, REG, "<OD>"),
)


class Florence2Writer(ConventionParse):
    name = "florence-2"
    description = "Florence-2 image/prefix/suffix: task token prefixes, <loc_N> floor into 1000 bins (0-999)"
    tasks = ("rec", "reg", "grounded-caption", "detection")
    default_tasks = ("rec", "reg", "grounded-caption")  # detection (<OD>) on request: it lists every region
    template_name = "florence-2"
    convention = FLORENCE_2
