"""HTTP/1.x and FHIR REST events (RFC 9112, HL7 FHIR R4/R5 RESTful API).

Query-string values, request bodies and FHIR resource ids never appear here: paths are
templates (`/emr/patients/{id}/chart/{id}`, `/fhir/Patient/{id}`), a query keeps its plausible
parameter *names* only, a User-Agent its products and platform comments (protocols/template.py).
"""

from __future__ import annotations

import msgspec

from medsentry.events.base import Endpoints, Event


class HttpRequest(Event, tag="http_request", frozen=True, kw_only=True):
    """One HTTP/1.x request head (RFC 9112 §3)."""

    flow_id: str
    endpoints: Endpoints
    method: str
    path: str  # a template: segments that may be identifiers are {id}, no query
    # parameter names only (values may hold PHI)
    query_params: list[str] = msgspec.field(default_factory=list)
    version: str = "HTTP/1.1"
    host: str | None = None
    user_agent: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    auth_scheme: str | None = None  # "Basic", "Bearer", "Digest", ... never the credential


class HttpResponse(Event, tag="http_response", frozen=True, kw_only=True):
    """One HTTP/1.x response head (RFC 9112 §4), paired with its request's method."""

    flow_id: str
    endpoints: Endpoints
    status: int
    version: str = "HTTP/1.1"
    request_method: str | None = None
    server: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    www_authenticate: str | None = None  # the challenge scheme(s) only


class FhirInteraction(Event, tag="fhir", frozen=True, kw_only=True):
    """One FHIR RESTful interaction seen in clear (FHIR R4 §3.1.0 "RESTful API").

    `interaction` is one of read, vread, update, patch, delete, history, create, search,
    capabilities, transaction, batch, operation. `patient_level` is true when the resource
    type belongs to the Patient compartment; `patient_data_in_clear` when such a resource
    (or a bundle that may carry them) actually passed in a cleartext body.
    """

    flow_id: str
    endpoints: Endpoints
    interaction: str
    method: str
    path_template: str  # e.g. "Patient/{id}/_history/{vid}"
    resource_type: str | None = None
    operation: str | None = None  # "$everything", "$validate", ...
    search_params: list[str] = msgspec.field(default_factory=list)
    status: int | None = None
    fhir_version: str | None = None  # from the fhirVersion mime parameter or CapabilityStatement
    mime_type: str | None = None
    patient_level: bool = False
    patient_data_in_clear: bool = False
    software_name: str | None = None  # CapabilityStatement.software (identity of the server)
    software_version: str | None = None
