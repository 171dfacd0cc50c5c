"""meta_spider.tools"""
