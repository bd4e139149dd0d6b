"""A driver stopped between two images of one evaluation (the tracking server went away): the resumed
trial logs the rest of that evaluation, never an image twice (a CI failure: ``samples`` at step 10 twice)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from search import tracking
from search.callback import SentSteps
from store_fixtures import new_mlflow_store


def test_a_resumed_run_logs_the_rest_of_a_half_logged_evaluation_and_no_image_twice(tmp_path):
    new_mlflow_store(tmp_path / "mlflow.db")
    client = tracking.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("images", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    folder = tmp_path / "eval"
    folder.mkdir()
    for name in ("class_hist_step10", "samples_step10"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{name}.png")
    half = tmp_path / "half"
    half.mkdir()
    (half / "class_hist_step10.png").write_bytes((folder / "class_hist_step10.png").read_bytes())
    tracking.log_evaluation_images(client, run_id, half, 10)  # then the driver stopped: no eval/step_ folder

    sent = SentSteps()
    sent.recall(client, client.get_run(run_id))
    assert sent.partial_images[run_id] == {("class_hist", 10)} and not sent.already_sent("images", run_id, 10)
    tracking.log_evaluation_images(client, run_id, folder, 10, present=sent.partial_images[run_id])
    names = [i.path for i in client.list_artifacts(run_id, tracking.IMAGES_DIR) if i.path.endswith(".png")
             and "compressed" not in i.path]
    assert sorted(n.split("/")[-1].split("+step+")[0] for n in names) == ["class_hist", "samples"], names
    assert tracking.logged_images(client, run_id) == {("class_hist", 10), ("samples", 10)}

    # a run whose evaluation was logged whole (its eval/step_ folder) holds no partial images
    client.log_artifacts(run_id, str(folder), artifact_path="eval/step_000000010")
    sent = SentSteps()
    sent.recall(client, client.get_run(run_id))
    assert sent.already_sent("images", run_id, 10) and sent.partial_images[run_id] == set()
