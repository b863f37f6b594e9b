"""The upload of a round's inspiration picture (docs/contracts.md): a team route of the search
function, the one that has the image decoder and the search's image limits (moodboard.round_pictures)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile, status

from moodboard.auth import TeamDep
from moodboard.deps import RuntimeDep, SettingsDep
from moodboard.round_pictures import StoredPicture, store_picture

router = APIRouter()


@router.post("/rounds/pictures", response_model=StoredPicture, status_code=status.HTTP_201_CREATED, tags=["team"])
def upload_round_picture(image: Annotated[UploadFile, File(description="the inspiration picture")], _: TeamDep,
                         runtime: RuntimeDep, settings: SettingsDep) -> StoredPicture:
    """Store an inspiration picture for a round, checked with the search's limits (413, 415, 422);
    a round item then names it as `picture`."""
    data = image.file.read(settings.max_image_bytes + 1)
    store = runtime.artifact_store()
    return store_picture(store.client, store.bucket, data, settings=settings)
