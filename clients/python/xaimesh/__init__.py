"""xaimesh: interpretability for language models, served as gRPC microservices.

    import xaimesh
    mesh = xaimesh.connect()
    model = mesh.model()
"""

from xaimesh.errors import XaimeshError
from xaimesh.mesh import Mesh, connect

__all__ = ["Mesh", "XaimeshError", "connect"]
__version__ = "0.1.0"
