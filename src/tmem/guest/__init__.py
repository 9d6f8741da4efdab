"""A miniature guest kernel memory manager that uses tmem, and the real
traces it replays."""
