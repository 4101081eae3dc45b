"""Request and response models of the emulated portal; they make the OpenAPI document exact."""
from typing import Annotated, List, Literal, Optional

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints

# 1-64 characters, no C0/C1 control characters (the portal's label rules as we guess them).
Label = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]


def _json_integer(value):
    """A JSON integer: 30 or 30.0 (JSON Schema counts both), but not "30", true or 1.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number of days")
    return value


ExpiresInDays = Annotated[int, Ge(1), Le(3650), BeforeValidator(_json_integer)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dialect(Strict):
    name: Literal["default", "cursor", "link", "offset", "unknown", "drift", "drift_always", "both_ids",
                  "maintenance", "normalize"]  # emulator.dialects.DIALECTS


class ClientCreate(Strict):
    label: Label
    allow_publish: StrictBool = True
    allow_subscribe: StrictBool = False


class ClientUpdate(Strict):
    allow_publish: Optional[StrictBool] = None
    allow_subscribe: Optional[StrictBool] = None


class SubscriberCreate(Strict):
    label: Label
    expires_in_days: Optional[ExpiresInDays] = Field(30, description="1-3650 days; null: never expires")


class ClientRow(BaseModel):
    client_id: str = Field(examples=["pub-3f9c2a71d0b4"])
    label: str
    username: str
    topic: str
    paused: bool
    allow_publish: bool
    allow_subscribe: bool
    history_topic_prefix: str
    created_at: str
    rotated_at: str


class ClientWithPassword(ClientRow):
    password: str = Field(description="shown once")


class ClientCreated(BaseModel):
    device: ClientWithPassword
    publish_topic: str


class Rotated(BaseModel):
    client_id: str
    username: str
    password: str = Field(description="shown once; the old password stops working at once")
    rotated_at: str


class Subscriber(BaseModel):
    id: str = Field(examples=["sub-7d41e0c2a9f3"])
    username: str
    label: str
    subscribe_filter: str
    created_at: str
    expires_at: Optional[str]
    expired: bool


class SubscriberCreated(Subscriber):
    password: str = Field(description="shown once")


NEXT = Field(description="path of the next page; null on the last page")


class ClientPage(BaseModel):
    items: List[ClientRow]
    page: int
    page_size: int
    total: int
    next: Optional[str] = NEXT


class SubscriberPage(BaseModel):
    items: List[Subscriber]
    page: int
    page_size: int
    total: int
    next: Optional[str] = NEXT


class Error(BaseModel):
    detail: str
    code: Optional[str] = None


class PlanLimitError(Error):
    limit: int
    active: int


# -- control surface (not in the OpenAPI document) ------------------------------------------------
class AccountFields(Strict):
    mgmt_addon: Optional[bool] = None
    max_clients: Optional[int] = None
    max_subscribers: Optional[int] = None
    hourly_budget: Optional[int] = None
    window_seconds: Optional[float] = None
    patch_supported: Optional[bool] = None


class TokenCreate(Strict):
    expires_in_days: Optional[int] = None


class Faults(Strict):
    latency_s: float = 0
    error_rate: float = 0.0
    error_statuses: List[int] = [500, 502, 503]
    drop_after_create: int = 0
    burst_429: int = 0
    fail_after_creates: Optional[int] = None
    truncate_writes: int = 0
    echo_auth_500: int = 0  # the next N requests get a text/plain 500 page that echoes the Authorization header
    unavailable_s: float = 0  # from the next request on, for this many seconds: 503 with Retry-After (nothing done)
    unavailable_after_create: int = 0  # the next N creates are done, then answered 503 with Retry-After


class Clock(Strict):
    advance_days: float = 0


class Login(Strict):
    username: str
    password: str
