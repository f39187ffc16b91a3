# nbgrader configuration for the course; run nbgrader from the repository root.
c = get_config()  # noqa: F821
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
