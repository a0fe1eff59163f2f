"""HTTP endpoints of the model catalog, the config schema and the config resolver."""

from dataclasses import asdict

from fastapi import APIRouter, Query

from app.configs import schemas
from app.configs.catalog import catalog, find_model, model_yaml
from app.configs.resolver import ResolvedConfig, default_config, resolve_config
from app.configs.schema import RESERVED, USER_MODE_KEYS, params_for
from app.core.auth import read_only
from app.core.jobs import Framework, TaskType

router = APIRouter(tags=["configs"])


@router.get("/api/v1/models/catalog", response_model=list[schemas.CatalogModelRead])
def get_catalog() -> list[schemas.CatalogModelRead]:
    """Every model a training job can start from."""
    return [schemas.CatalogModelRead.model_validate(m) for m in catalog()]


@router.get("/api/v1/models/{model_name}/config-schema", response_model=schemas.ConfigSchemaRead)
def get_config_schema(model_name: str, task: TaskType | None = None) -> schemas.ConfigSchemaRead:
    """Every training parameter of the model, per task (or only `task`), with its default."""
    model = find_model(model_name)
    tasks = [t for t in model.tasks if task is None or t == task]
    return schemas.ConfigSchemaRead(
        model_name=model.name,
        framework=model.framework,
        user_mode_keys=list(USER_MODE_KEYS),
        reserved=[schemas.ReservedKeyRead(name=k, reason=r) for k, r in RESERVED.items()],
        tasks=[_task_schema(model.framework, t) for t in tasks],
    )


def _task_schema(framework: str, task: str) -> schemas.TaskSchemaRead:
    defaults = default_config(framework, task)
    params = []
    for p in params_for(task):
        fields = {k: v for k, v in asdict(p).items() if k not in {"kind", "tasks", "user_mode", "choices"}}
        params.append(
            schemas.ParamRead(
                **fields,
                type=p.kind.value,
                default=defaults.get(p.name),
                user_mode_allowed=p.user_mode,
                choices=list(p.choices) or None,
            )
        )
    return schemas.TaskSchemaRead(task=task, params=params)


@router.get("/api/v1/training/config/default", response_model=schemas.ResolvedConfigRead)
def get_default_config(
    task: TaskType, framework: Framework = Query(Framework.ULTRALYTICS)
) -> schemas.ResolvedConfigRead:
    """The shipped base config of a framework and task, as a resolved config."""
    return _read(resolve_config(framework, task, overrides={}))


@router.post("/api/v1/training/config/resolve", response_model=schemas.ResolvedConfigRead)
@read_only
def post_resolve(body: schemas.ResolveRequest) -> schemas.ResolvedConfigRead:
    """Merge base_config and overrides onto the base; 422 with one entry per bad field."""
    model = model_yaml(body.model_name, body.task) if body.model_name is not None else None
    resolved = resolve_config(
        body.framework,
        body.task,
        overrides=body.overrides,
        mode=body.mode,
        base_config=body.base_config,
        model=model,
    )
    return _read(resolved)


def _read(resolved: ResolvedConfig) -> schemas.ResolvedConfigRead:
    return schemas.ResolvedConfigRead.model_validate(resolved, from_attributes=True)
