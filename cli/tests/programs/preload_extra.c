/* preload_extra: an empty library that a user might already preload. */
int preload_extra_marker(void);
int preload_extra_marker(void)
{
    return 1;
}
