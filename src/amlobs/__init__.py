"""AML run observability: turn Azure Machine Learning run events into Application Insights records."""

__version__ = "1.0.0"
