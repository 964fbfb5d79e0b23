"""AML run observability: turn Azure Machine Learning run events into Application Insights records."""

__version__ = "1.0.0"
# What every HTTP client of the package sends as its User-Agent (azure-core appends its own parts).
USER_AGENT = f"amlobs/{__version__}"
