"""DCAT-AP 3 / HealthDCAT-AP graphs from the catalogue's values (`model`).

Every node has an IRI below the hub's `/catalog` (no blank nodes), so that the graph of a dataset is the
same wherever it appears (its own document, a page of the catalogue, a harvester's copy) and graphs merge
by plain union. Each dataset's graph carries what the validators' range checks need to know about the
terms it uses (a licence is a `dct:LicenseDocument`, a standard a `dct:Standard` ...), as the R8 example
does; vocabulary membership (`skos:inScheme`) comes from the background the validator loads.

Who is who, until EHDS health data access bodies exist: the hub's Use & Access office is the `hdab` (and
publisher) of every non-public dataset; a site's data integration centre is its custodian (`geodcatap:
custodian`); the access route (`dcat:distribution`) is the portal's proposal page; feasibility queries
and the dashboard are the `healthdcatap:analytics` of a site's data, served by `dcat:DataService`s.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from rdflib import Graph, Literal, URIRef

from datenraum.catalogue.model import (
    Access,
    Agent,
    Kind,
    Network,
    PublicSeries,
    Record,
    SiteData,
    Study,
)
from datenraum.catalogue.vocab import (
    ACCESS_RIGHT,
    AVAILABILITY,
    CODING_SYSTEM,
    CODING_SYSTEMS,
    COUNTRY,
    CSVW,
    CV,
    DATA_THEME,
    DATASET_TYPE,
    DCAT,
    DCATAP,
    DCTERMS,
    DPV,
    DPVPD,
    EHDS,
    ELI,
    FILE_TYPE,
    FOAF,
    FREQUENCY,
    GEODCATAP,
    HEALTH,
    HEALTH_ACTIVITY,
    HEALTH_CATEGORY,
    LANGUAGE,
    LICENCE_CC_BY,
    MEDIA_TYPE,
    PREFIXES,
    PROV,
    PUBLISHER_TYPE,
    RDF,
    RDFS,
    STANDARD,
    VCARD,
    XSD,
)

__all__ = [
    "catalog_graph",
    "catalog_iri",
    "dataset_graph",
    "dataset_iri",
    "new_graph",
    "public_catalog_graph",
    "records",
    "services_graph",
]

_EN = "en"
_KEY = re.compile(r"[^A-Za-z0-9._-]+")


def new_graph() -> Graph:
    graph = Graph(bind_namespaces="core")
    for prefix, namespace in PREFIXES.items():
        graph.bind(prefix, namespace)
    return graph


def _key(text: str) -> str:
    return _KEY.sub("-", text).strip("-") or "x"


def catalog_iri(network: Network) -> URIRef:
    return URIRef(f"{network.base_url.rstrip('/')}/catalog")


def dataset_iri(network: Network, dataset_id: str) -> URIRef:
    return URIRef(f"{catalog_iri(network)}/datasets/{dataset_id}")


def _agent_iri(network: Network, agent: Agent) -> URIRef:
    return URIRef(f"{catalog_iri(network)}/agents/{_key(agent.key)}")


def _service_iri(network: Network, name: str) -> URIRef:
    return URIRef(f"{catalog_iri(network)}/services/{name}")


def _url(network: Network, path: str) -> URIRef:
    return URIRef(network.base_url.rstrip("/") + path)


def _text(value: str) -> Literal:
    return Literal(value, lang=_EN)


def _date(value: dt.datetime | dt.date) -> Literal:
    if isinstance(value, dt.datetime):
        return Literal(value.astimezone(dt.UTC).replace(microsecond=0).isoformat(), datatype=XSD.dateTime)
    return Literal(value.isoformat(), datatype=XSD.date)


def _count(value: int) -> Literal:
    return Literal(str(value), datatype=XSD.nonNegativeInteger)


# -- the records: what the catalogue lists


def records(
    network: Network, sites: Iterable[SiteData], studies: Iterable[Study], series: Iterable[PublicSeries]
) -> list[Record]:
    """Every dataset of the catalogue, sorted by id."""
    found: list[Record] = []
    for site in sites:
        found.append(
            Record(
                id=f"site-{_key(site.key)}",
                kind=Kind.SITE,
                access=Access.NON_PUBLIC,
                title=f"Routine-care data of {site.name} (MII core data set, FHIR)",
                description=_site_description(site),
                modified=site.reported or network.modified,
                keywords=("routine care", "electronic health records", "MII core data set", "FHIR"),
                site=site.key,
                health_category="EHRS",
                source=site,
            )
        )
    for study in studies:
        category = _study_category(study)
        found.append(
            Record(
                id=f"{study.kind.value}-{_key(study.key)}",
                kind=study.kind,
                access=Access.NON_PUBLIC,
                title=f"{study.acronym}: {study.name}",
                description=study.description or study.name,
                modified=network.modified,
                keywords=(study.acronym, study.kind.value),
                health_category=category,
                source=study,
            )
        )
    for one in series:
        found.append(
            Record(
                id=f"series-{_key(one.key)}",
                kind=Kind.SERIES,
                access=Access.PUBLIC,
                title=one.title,
                description=one.description,
                modified=dt.datetime.combine(one.modified, dt.time(), dt.UTC),
                keywords=one.keywords or ("indicators",),
                source=one,
            )
        )
    return sorted(found, key=lambda record: record.id)


def _study_category(study: Study) -> str:
    text = f"{study.name} {study.description}".casefold()
    if "biobank" in text or "biomaterial" in text:
        return "EINS"  # health data from biobanks
    if study.kind == Kind.PROJECT:
        return "EHCT"  # clinical trials, studies, investigations
    return "RQSH"  # research cohorts, questionnaires, surveys


def _site_description(site: SiteData) -> str:
    where = f" in {site.city}" if site.city else ""
    text = (
        f"Routine-care data of {site.name}{where}, in the modules of the Medical Informatics Initiative's "
        "core data set (FHIR R4), kept in the site's own store. Researchers learn how many patients match "
        "through the network's feasibility queries and apply for use through its Use & Access procedure; "
        "no patient-level data leave the site unless a use has been approved."
    )
    others = sorted(system for system in site.coding_systems if system not in CODING_SYSTEMS)
    if others:
        text += " Further code systems: " + ", ".join(others) + "."
    if site.reported is None:
        text += " The site has not reported the figures of its data yet."
    return text


# -- parts shared by datasets


def _legislation(graph: Graph, node: URIRef) -> None:
    graph.add((node, DCATAP.applicableLegislation, URIRef(EHDS)))
    graph.add((URIRef(EHDS), RDF.type, ELI.LegalResource))


def _agent(graph: Graph, network: Network, agent: Agent) -> URIRef:
    """The agent with its `cv:ContactPoint` (health agents need exactly one)."""
    node = _agent_iri(network, agent)
    contact = URIRef(f"{node}#contact")
    graph.add((node, RDF.type, FOAF.Agent))
    graph.add((node, FOAF.name, _text(agent.name)))
    graph.add((node, DCTERMS.type, PUBLISHER_TYPE[agent.kind]))
    graph.add((node, CV.contactPoint, contact))
    graph.add((contact, RDF.type, CV.ContactPoint))
    if agent.email:
        graph.add((contact, CV.email, Literal(agent.email)))
    graph.add((contact, CV.contactPage, URIRef(agent.page or network.base_url.rstrip("/") + "/directory")))
    return node


def _contact_point(graph: Graph, node: URIRef, agent: Agent, network: Network) -> None:
    """The dataset's `dcat:contactPoint`, a vCard (the other contact vocabulary of the profile)."""
    contact = URIRef(f"{node}#contact")
    graph.add((node, DCAT.contactPoint, contact))
    graph.add((contact, RDF.type, VCARD.Kind))
    graph.add((contact, VCARD.fn, Literal(agent.name)))
    if agent.email:
        graph.add((contact, VCARD.hasEmail, URIRef(f"mailto:{agent.email}")))
    graph.add((contact, VCARD.hasURL, URIRef(agent.page or network.base_url.rstrip("/") + "/directory")))


def _document(graph: Graph, url: URIRef) -> URIRef:
    graph.add((url, RDF.type, FOAF.Document))
    return url


def _distribution(
    graph: Graph,
    node: URIRef,
    *,
    title: str,
    description: str,
    access_url: URIRef,
    file_type: str,
    media_type: str,
    download_url: URIRef | None = None,
    service: URIRef | None = None,
    conforms_to: URIRef | None = None,
    licence: bool = False,
) -> URIRef:
    graph.add((node, RDF.type, DCAT.Distribution))
    graph.add((node, DCTERMS.title, _text(title)))
    graph.add((node, DCTERMS.description, _text(description)))
    _legislation(graph, node)
    graph.add((node, DCAT.accessURL, access_url))
    graph.add((node, DCATAP.availability, AVAILABILITY.AVAILABLE))
    graph.add((node, DCTERMS.format, FILE_TYPE[file_type]))
    graph.add((FILE_TYPE[file_type], RDF.type, DCTERMS.MediaTypeOrExtent))
    graph.add((node, DCAT.mediaType, MEDIA_TYPE[media_type]))
    graph.add((MEDIA_TYPE[media_type], RDF.type, DCTERMS.MediaType))
    if download_url is not None:
        graph.add((node, DCAT.downloadURL, download_url))
    if service is not None:
        graph.add((node, DCAT.accessService, service))
    if conforms_to is not None:
        graph.add((node, DCTERMS.conformsTo, conforms_to))
        graph.add((conforms_to, RDF.type, DCTERMS.Standard))
    if licence:
        graph.add((node, DCTERMS.license, URIRef(LICENCE_CC_BY)))
        graph.add((URIRef(LICENCE_CC_BY), RDF.type, DCTERMS.LicenseDocument))
    return node


def _common(graph: Graph, network: Network, record: Record, node: URIRef) -> None:
    """What every dataset has, public or not."""
    graph.add((node, RDF.type, DCAT.Dataset))
    graph.add((node, DCTERMS.title, _text(record.title)))
    graph.add((node, DCTERMS.description, _text(record.description)))
    graph.add((node, DCTERMS.identifier, Literal(str(node))))
    graph.add((node, DCTERMS.accessRights, ACCESS_RIGHT[record.access.value]))
    graph.add((ACCESS_RIGHT[record.access.value], RDF.type, DCTERMS.RightsStatement))
    graph.add((node, DCTERMS.type, DATASET_TYPE.STATISTICAL))
    graph.add((node, DCTERMS.modified, _date(record.modified)))
    graph.add((node, DCTERMS.language, LANGUAGE.ENG))
    graph.add((LANGUAGE.ENG, RDF.type, DCTERMS.LinguisticSystem))
    graph.add((node, DCAT.theme, DATA_THEME[record.theme]))
    graph.add((node, DCTERMS.spatial, COUNTRY.DEU))
    graph.add((COUNTRY.DEU, RDF.type, DCTERMS.Location))
    for keyword in record.keywords:
        graph.add((node, DCAT.keyword, _text(keyword)))
    graph.add((node, DCTERMS.publisher, _agent(graph, network, network.publisher)))
    _legislation(graph, node)
    graph.add((node, DCAT.landingPage, _document(graph, _url(network, f"/catalogue/datasets/{record.id}"))))


def _non_public(graph: Graph, network: Network, record: Record, node: URIRef, custodian: Agent) -> None:
    """The HealthDCAT-AP properties the R8 NON_PUBLIC shapes require of every dataset."""
    graph.add((node, HEALTH.hdab, _agent(graph, network, network.access_body)))
    _contact_point(graph, node, network.access_body, network)
    graph.add((node, GEODCATAP.custodian, _agent(graph, network, custodian)))
    if record.health_category:
        graph.add((node, HEALTH.healthCategory, HEALTH_CATEGORY[record.health_category]))
    provenance = URIRef(f"{node}#provenance")
    graph.add((node, DCTERMS.provenance, provenance))
    graph.add((provenance, RDF.type, DCTERMS.ProvenanceStatement))
    graph.add((provenance, RDFS.label, _text(_PROVENANCE[record.kind])))
    access = _distribution(
        graph,
        URIRef(f"{node}#access"),
        title="Application for use (Use & Access)",
        description="Apply for the use of these data through the network's Use & Access procedure: a "
        "proposal, reviewed by the use and access committee and approved site by site.",
        access_url=_url(network, "/proposals/new"),
        file_type="HTML",
        media_type="text/html",
    )
    graph.add((node, DCAT.distribution, access))
    graph.add((node, DCTERMS.accrualPeriodicity, FREQUENCY.DAILY))
    graph.add((FREQUENCY.DAILY, RDF.type, DCTERMS.Frequency))
    purpose = URIRef(f"{node}#purpose")
    graph.add((node, DPV.hasPurpose, purpose))
    graph.add((purpose, RDF.type, DPV.Purpose))
    graph.add((purpose, DCTERMS.description, _text("Scientific research, after approval of a proposal.")))
    basis = URIRef(f"{node}#legal-basis")
    graph.add((node, DPV.hasLegalBasis, basis))
    graph.add((basis, RDF.type, DPV.LegalBasis))
    graph.add(
        (
            basis,
            DCTERMS.description,
            _text(
                "Secondary use of health data: the patients' broad consent, "
                "and the European Health Data Space regulation once it applies."
            ),
        )
    )


_PROVENANCE = {
    Kind.SITE: "Routine-care data of the hospital's information systems, mapped to the MII core data set "
    "(FHIR) by its data integration centre and loaded into the site's store. The figures are computed by "
    "the site and reported rounded, never below the disclosure threshold.",
    Kind.INFRASTRUCTURE: "Described by the network's coordination office in its directory.",
    Kind.PROJECT: "Described by the network's coordination office in its directory.",
}


def _site(graph: Graph, network: Network, record: Record, node: URIRef, site: SiteData) -> None:
    _non_public(graph, network, record, node, site.custodian)
    graph.add((node, DCTERMS.conformsTo, STANDARD.FHIR))
    graph.add((STANDARD.FHIR, RDF.type, DCTERMS.Standard))
    for code in sorted({CODING_SYSTEMS[s] for s in site.coding_systems if s in CODING_SYSTEMS}):
        graph.add((node, HEALTH.hasCodingSystem, CODING_SYSTEM[code]))
        graph.add((CODING_SYSTEM[code], RDF.type, DCTERMS.Standard))
    activity = URIRef(f"{node}#generation")
    graph.add((node, PROV.wasGeneratedBy, activity))
    graph.add((activity, RDF.type, PROV.Activity))
    graph.add((activity, RDFS.label, _text("Routine hospital care, documented in the hospital's records")))
    graph.add((activity, DCTERMS.type, HEALTH_ACTIVITY.HOSPITAL_RECORDS))
    for personal in ("Age", "Gender", "HealthRecord"):
        graph.add((node, DPV.hasPersonalData, DPVPD[personal]))
        graph.add((DPVPD[personal], RDF.type, DPV.PersonalData))
    figures = (
        (HEALTH.numberOfUniqueIndividuals, site.patients),
        (HEALTH.numberOfRecords, site.records),
        (HEALTH.minTypicalAge, site.min_age),
        (HEALTH.maxTypicalAge, site.max_age),
    )
    for predicate, value in figures:
        if value is not None:
            graph.add((node, predicate, _count(value)))
    if site.first_year is not None and site.last_year is not None:
        coverage = URIRef(f"{node}#coverage")
        graph.add((node, DCTERMS.temporal, coverage))
        graph.add((coverage, RDF.type, DCTERMS.PeriodOfTime))
        graph.add((coverage, DCAT.startDate, _date(dt.date(site.first_year, 1, 1))))
        graph.add((coverage, DCAT.endDate, _date(dt.date(site.last_year, 12, 31))))
    graph.add((node, HEALTH.populationCoverage, _text(f"Patients treated at {site.name}.")))
    graph.add((node, HEALTH.hasStructuredData, Literal(bool(site.tables))))
    if site.tables:
        _variables(graph, node, site)
    # What researchers can do with the data before applying: ask how many patients match, and (where
    # the hub has one) see the dashboard's pooled indicators.
    feasibility = _distribution(
        graph,
        URIRef(f"{node}#feasibility"),
        title="Feasibility queries",
        description="How many patients of this site match a set of criteria: counts obfuscated at the "
        "site, never below the disclosure threshold (researchers of the network, signed in).",
        access_url=_url(network, "/queries/new"),
        file_type="JSON",
        media_type="application/json",
        service=_service_iri(network, "feasibility"),
    )
    graph.add((node, HEALTH.analytics, feasibility))
    services_graph(network, [record], graph)  # the services the analytics name, described here too
    if network.dashboard:
        dashboard = _distribution(
            graph,
            URIRef(f"{node}#dashboard"),
            title="Dashboard",
            description="Indicators pooled over the network's sites, public.",
            access_url=_url(network, "/dashboard"),
            file_type="HTML",
            media_type="text/html",
            service=_service_iri(network, "dashboard"),
        )
        graph.add((node, HEALTH.analytics, dashboard))
    if site.reported is not None:
        graph.add((node, DCTERMS.issued, _date(site.reported)))


def _variables(graph: Graph, node: URIRef, site: SiteData) -> None:
    """The store's flattened tables as a CSVW table group (`healthdcatap:hasVariables`)."""
    group = URIRef(f"{node}#variables")
    graph.add((node, HEALTH.hasVariables, group))
    graph.add((group, RDF.type, CSVW.TableGroup))
    graph.add((group, DCTERMS.title, _text(f"Tables of the site store of {site.name}")))
    for table in site.tables:
        table_node = URIRef(f"{node}#table-{_key(table.name)}")
        graph.add((group, CSVW.table, table_node))
        graph.add((table_node, RDF.type, CSVW.Table))
        graph.add((table_node, DCTERMS.title, _text(table.name)))
        graph.add((table_node, DCTERMS.description, _text(table.description)))
        for column in table.columns:
            column_node = URIRef(f"{node}#column-{_key(table.name)}.{_key(column.name)}")
            graph.add((table_node, CSVW.column, column_node))
            graph.add((column_node, RDF.type, CSVW.Column))
            graph.add((column_node, CSVW.name, Literal(column.name)))
            graph.add((column_node, CSVW.title, _text(column.name.replace("_", " "))))
            graph.add((column_node, CSVW.datatype, Literal(column.datatype)))
            graph.add((column_node, DCTERMS.description, _text(column.description)))


def _study(graph: Graph, network: Network, record: Record, node: URIRef, study: Study) -> None:
    _non_public(graph, network, record, node, network.publisher)
    graph.add((node, HEALTH.hasStructuredData, Literal(False)))
    for site in study.sites:
        graph.add((node, DCAT.keyword, _text(site)))


def _series(graph: Graph, network: Network, record: Record, node: URIRef, series: PublicSeries) -> None:
    graph.add((node, DCTERMS.accrualPeriodicity, FREQUENCY.DAILY))
    graph.add((FREQUENCY.DAILY, RDF.type, DCTERMS.Frequency))
    _contact_point(graph, node, network.publisher, network)
    schema = URIRef(series.schema_url)
    for suffix, file_type, media_type, url in (
        ("csv", "CSV", "text/csv", series.csv_url),
        ("json", "JSON", "application/json", series.json_url),
    ):
        distribution = _distribution(
            graph,
            URIRef(f"{node}#{suffix}"),
            title=f"{series.title} ({file_type})",
            description=f"The series as {file_type}, the same rows as the dashboard's chart (CC BY 4.0).",
            access_url=URIRef(url),
            download_url=URIRef(url),
            file_type=file_type,
            media_type=media_type,
            conforms_to=schema,
            licence=True,
        )
        graph.add((node, DCAT.distribution, distribution))


def dataset_graph(network: Network, record: Record, graph: Graph | None = None) -> Graph:
    """The dataset of `record` with everything it refers to (added to `graph` if given)."""
    graph = new_graph() if graph is None else graph
    node = dataset_iri(network, record.id)
    _common(graph, network, record, node)
    source = record.source
    if isinstance(source, SiteData):
        _site(graph, network, record, node, source)
    elif isinstance(source, Study):
        _study(graph, network, record, node, source)
    elif isinstance(source, PublicSeries):
        _series(graph, network, record, node, source)
    return graph


# -- the catalog and its services


def services_graph(network: Network, served: Sequence[Record], graph: Graph) -> list[URIRef]:
    """The feasibility service (and the dashboard, if there is one) as `dcat:DataService`s."""
    services = [
        (
            "feasibility",
            "Feasibility queries",
            "How many patients match: structured queries (CCDL) answered by every site with obfuscated "
            "counts. For signed-in researchers of the network.",
            "/api/v1/queries",
            [r for r in served if r.kind == Kind.SITE],
            Access.NON_PUBLIC,
        )
    ]
    if network.dashboard:
        services.append(
            (
                "dashboard",
                "Dashboard",
                "Indicators of the network's sites, pooled, with CSV and JSON downloads.",
                "/dashboard",
                list(served),
                Access.PUBLIC,
            )
        )
    nodes = []
    for name, title, description, path, datasets, access in services:
        node = _service_iri(network, name)
        graph.add((node, RDF.type, DCAT.DataService))
        graph.add((node, DCTERMS.title, _text(title)))
        graph.add((node, DCTERMS.description, _text(description)))
        graph.add((node, DCAT.endpointURL, _url(network, path)))
        graph.add((node, DCAT.endpointDescription, _url(network, "/openapi.json")))
        graph.add((node, DCTERMS.accessRights, ACCESS_RIGHT[access.value]))
        graph.add((ACCESS_RIGHT[access.value], RDF.type, DCTERMS.RightsStatement))
        graph.add((node, DCTERMS.publisher, _agent(graph, network, network.publisher)))
        graph.add((node, DCAT.theme, DATA_THEME.HEAL))
        graph.add((node, DCAT.keyword, _text(name)))
        _contact_point(graph, node, network.publisher, network)
        _legislation(graph, node)
        for record in datasets:
            graph.add((node, DCAT.servesDataset, dataset_iri(network, record.id)))
        nodes.append(node)
    return nodes


def catalog_graph(
    network: Network,
    page: Sequence[Record],
    *,
    served: Sequence[Record] = (),
    parts: Sequence[tuple[str, str]] = (),
) -> Graph:
    """The hub's `dcat:Catalog` with the datasets of `page`, its data services (serving `served`), and
    `parts`: (IRI, title) of the catalogues it includes by reference (`dct:hasPart`)."""
    graph = new_graph()
    node = catalog_iri(network)
    graph.add((node, RDF.type, DCAT.Catalog))
    graph.add((node, DCTERMS.title, _text(network.title)))
    graph.add((node, DCTERMS.description, _text(network.description)))
    graph.add((node, DCTERMS.publisher, _agent(graph, network, network.publisher)))
    graph.add((node, DCTERMS.modified, _date(network.modified)))
    graph.add((node, DCTERMS.spatial, COUNTRY.DEU))
    graph.add((COUNTRY.DEU, RDF.type, DCTERMS.Location))
    graph.add((node, DCTERMS.language, LANGUAGE.ENG))
    graph.add((LANGUAGE.ENG, RDF.type, DCTERMS.LinguisticSystem))
    graph.add((node, FOAF.homepage, _document(graph, _url(network, "/catalogue"))))
    graph.add((node, DCAT.themeTaxonomy, URIRef(str(DATA_THEME).rstrip("/"))))
    _legislation(graph, node)
    for record in page:
        graph.add((node, DCAT.dataset, dataset_iri(network, record.id)))
        dataset_graph(network, record, graph)
    for service in services_graph(network, served, graph):
        graph.add((node, DCAT.service, service))
    for iri, title in parts:
        part = URIRef(iri)
        graph.add((node, DCTERMS.hasPart, part))
        graph.add((part, RDF.type, DCAT.Catalog))
        graph.add((part, DCTERMS.title, _text(title)))
        graph.add((part, DCTERMS.description, _text(f"{title}: a catalogue of its own, in its document.")))
        graph.add((part, DCTERMS.publisher, _agent(graph, network, network.publisher)))
        graph.add((part, DCTERMS.language, LANGUAGE.ENG))
        graph.add((part, DCAT.themeTaxonomy, URIRef(str(DATA_THEME).rstrip("/"))))
        graph.add((part, FOAF.homepage, _document(graph, part)))
        _legislation(graph, part)
    return graph


def public_catalog_graph(network: Network, public: Sequence[Record]) -> Graph:
    """The catalogue of the public series (`<catalog>/public`): open data
    under CC BY 4.0, described as DCAT-AP 3.0.1 asks of a catalogue (publisher, language, licence...)."""
    graph = new_graph()
    node = URIRef(f"{catalog_iri(network)}/public")
    graph.add((node, RDF.type, DCAT.Catalog))
    graph.add((node, DCTERMS.title, _text("Public series of the Datenraum dashboard")))
    graph.add((node, DCTERMS.description, _text("Indicators pooled over the network's sites.")))
    # The hub's catalog names this one as its part (`dct:hasPart`); no `dct:isPartOf` back, which DCAT-AP
    # would want typed and described as a catalogue in this document too.
    graph.add((node, DCTERMS.publisher, _agent(graph, network, network.publisher)))
    graph.add((node, DCTERMS.modified, _date(max((r.modified for r in public), default=network.modified))))
    graph.add((node, DCTERMS.spatial, COUNTRY.DEU))
    graph.add((COUNTRY.DEU, RDF.type, DCTERMS.Location))
    graph.add((node, DCTERMS.language, LANGUAGE.ENG))
    graph.add((LANGUAGE.ENG, RDF.type, DCTERMS.LinguisticSystem))
    graph.add((node, DCTERMS.license, URIRef(LICENCE_CC_BY)))
    graph.add((URIRef(LICENCE_CC_BY), RDF.type, DCTERMS.LicenseDocument))
    graph.add((node, FOAF.homepage, _document(graph, _url(network, "/dashboard"))))
    graph.add((node, DCAT.themeTaxonomy, URIRef(str(DATA_THEME).rstrip("/"))))
    for record in public:
        graph.add((node, DCAT.dataset, dataset_iri(network, record.id)))
        dataset_graph(network, record, graph)
    return graph
