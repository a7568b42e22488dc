"""One class taxonomy: an inserted or drawn object takes the source dataset's class name.

Scenarios name what they insert in one canonical word (`labels.inserted: pedestrian`); a KITTI frame's own
pedestrians are `Pedestrian`, nuScenes' `human.pedestrian.adult`, COCO's `person`. Left as written, an
export would carry two pedestrian categories and a detector trained on the source would be charged a false
positive for every inserted pedestrian it finds. The plan maps the canonical word through the source's
table below; a scenario's `class_names: {kitti: Person_sitting}` overrides it for its objects. A word a
source has no class for (a cone in KITTI) stays as written: a new class, honestly named. LeRobot and plain
image folders have no taxonomy.
"""

from __future__ import annotations

# source kind -> canonical inserted label -> the source's class name
CLASS_NAMES = {
    # KITTI object devkit's types
    "kitti": {"pedestrian": "Pedestrian", "person": "Pedestrian", "car": "Car", "vehicle": "Car",
              "van": "Van", "truck": "Truck", "cyclist": "Cyclist", "tram": "Tram",
              "person_sitting": "Person_sitting"},
    # nuScenes' category names (the detection challenge's classes, at their finest level)
    "nuscenes": {"pedestrian": "human.pedestrian.adult", "person": "human.pedestrian.adult",
                 "child": "human.pedestrian.child", "car": "vehicle.car", "vehicle": "vehicle.car",
                 "truck": "vehicle.truck", "bus": "vehicle.bus.rigid", "cyclist": "vehicle.bicycle",
                 "bicycle": "vehicle.bicycle", "motorcycle": "vehicle.motorcycle",
                 "traffic_cone": "movable_object.trafficcone", "barrier": "movable_object.barrier"},
    # COCO's 80 categories
    "coco": {"pedestrian": "person", "person": "person", "car": "car", "vehicle": "car", "truck": "truck",
             "bus": "bus", "cyclist": "bicycle", "bicycle": "bicycle", "motorcycle": "motorcycle",
             "stop_sign": "stop sign", "dog": "dog", "cat": "cat", "cup": "cup", "bottle": "bottle"},
}
# the labels keys that name an object's class (perception/localize.py, stages/localize.py read them)
CLASS_KEYS = ("inserted", "removed")


def source_taxonomy(input_kind: str, coco_annotations: bool) -> str | None:
    """The table a run's input uses: its kind's, COCO's where input.annotations names a COCO file, else none."""
    if input_kind in CLASS_NAMES:
        return input_kind
    return "coco" if coco_annotations else None


def map_labels(labels: dict, taxonomy: str | None, overrides: dict) -> dict:
    """A job's labels with its object classes in the source's names; the scenario's word is kept beside
    each one it changed (`inserted_canonical`)."""
    out = dict(labels)
    for key in CLASS_KEYS:
        word = labels.get(key)
        if word is None or taxonomy is None:
            continue
        name = overrides.get(taxonomy) or CLASS_NAMES[taxonomy].get(str(word).lower(), word)
        if name != word:
            out[key], out[f"{key}_canonical"] = name, word
    return out
