"""PaliGemma 1/2: ``<locNNNN>`` tokens **y first**, ``round(v / size * 1023)`` clipped to 0..1023.

FORMATS_NEXT §6.  Formula [code] google-research/big_vision ``5f95305c``
``big_vision/pp/proj/paligemma/segmentation.py`` ``refcoco_mask2str`` (the official RefCOCO transfer)::

    loc_tokens = ['<loc%04d>' % i for i in range(1024)]
    binned_loc = tf.clip_by_value(tf.cast(tf.round(bbox * 1023), tf.int32), 0, 1023)  # [ymin, xmin, ymax, xmax]

``tf.round`` is half-to-even, as Python's ``round``.  Decoding ``/1023`` as the official evaluator
(``big_vision/evaluators/proj/paligemma/transfers/segmentation.py``); supervision and the HF cookbook divide
by 1024 (up to one extra step at the far edge).  Object: ``<loc ymin><loc xmin><loc ymax><loc xmax> label``;
several objects joined by `` ; `` (HF cookbook); prompt ``detect {things}`` ([doc]
``big_vision/configs/proj/paligemma/README.md``), several things joined by `` ; `` too.  REC: ``detect expr``;
grounded caption: every grounded phrase of the caption detected at once (PaliGemma has no grounded-caption
prompt; this is its multi-object detection form); detection: ``detect {categories}`` → every region's boxes
under its category (else its phrase).  Records ``{"image", "prefix", "suffix"}`` (big_vision
``transfers/forkme.py`` ``bv:jsonl``; HF ``PaliGemmaProcessor(text=prefix, suffix=suffix)``).  Fully
declarative (:data:`PALIGEMMA`): y-first is the order of the value positions in the box spelling.
"""

from __future__ import annotations

from .. import boxes as B
from .convention import Columns, Convention, Listing, Spelling, Tagging
from .decoding import ConventionParse

SEPARATOR = " ; "

PALIGEMMA = Convention(
    grid=B.Quantizer(scale=1023, rounding="round", max_index=1023),
    spelling=Spelling(box=("<loc", 1, "><loc", 0, "><loc", 3, "><loc", 2, ">"), pad=4),  # ymin xmin ymax xmax
    tagging=Tagging(),
    layout=Columns((("prefix", ("prompt",)), ("suffix", ("answer",)))),
    placeholders=(("rec", "phrase"), ("grounded-caption", "phrases"), ("detection", "phrases")),
    answers=(("rec", "{objects}"), ("grounded-caption", "{objects}"), ("detection", "{objects}")),
    listing=Listing(item="{boxes} {label}", joiner=SEPARATOR, per_box=True),  # "<loc>×4 label ; …"
    reserved=("<loc", "<seg", SEPARATOR),
)


class PaliGemmaWriter(ConventionParse):
    name = "paligemma"
    description = "PaliGemma image/prefix/suffix: detect …, <locNNNN> y-first round(v/size*1023), ' ; '-joined"
    tasks = ("rec", "grounded-caption", "detection")
    default_tasks = ("rec", "grounded-caption")  # detection (every region) on request
    template_name = "paligemma"
    convention = PALIGEMMA
