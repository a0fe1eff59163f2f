from pydantic import BaseModel, ConfigDict, Field


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zip_path: str = Field(min_length=1, max_length=1000, description="projects/<project>/releases/<name>.zip")


class ExtractionRead(BaseModel):
    zip_path: str
    release_slug: str
    extracted: bool
    up_to_date: bool
    target_dir: str
    files: int
    bytes: int
