"""Reports: HTML (jinja2), PDF (WeasyPrint), JSON and STIX 2.1 from what the store holds.
(No imports here: submodules pull in jinja2/weasyprint/stix2 only when used.)"""
