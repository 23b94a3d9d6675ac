"""evaluate.py's tasks as plain functions over the config and a loaded agent; :mod:`fls.tasks.registry` names them
(``TASKS``) and dispatches. The entry function of each:

- ``task=episodes`` / ``merge``: :func:`fls.evaluation.episodes.evaluate_episodes` / ``merge``
- ``task=video``: :func:`fls.tasks.video.saliency_video`
- ``task=tree``: :func:`fls.tasks.tree.attention_tree_task`
- ``task=gaze``: :func:`fls.tasks.gaze.gaze_agreement`
- ``task=faithfulness``: :func:`fls.tasks.faithfulness.faithfulness_task`
- ``task=report``: :func:`fls.report.make.make_report`
- after training (train.py): :func:`fls.tasks.after_training.after_training`
"""
